// A counting semaphore: bounds how many object writes run at once (one permit per core by default).
import { availableParallelism } from "node:os";

export class Semaphore {
  #free: number;
  #waiters: (() => void)[] = [];

  constructor(permits: number = defaultWritePermits()) {
    this.#free = Math.max(1, permits);
  }

  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--;
      return;
    }
    await new Promise<void>((resolve) => this.#waiters.push(resolve));
  }

  release(): void {
    const next = this.#waiters.shift();
    if (next) next(); // the permit passes straight to the next waiter
    else this.#free++;
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await fn();
    } finally {
      this.release();
    }
  }
}

export function defaultWritePermits(): number {
  try {
    return availableParallelism();
  } catch {
    return navigator.hardwareConcurrency || 1;
  }
}
