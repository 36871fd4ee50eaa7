// Repository commands: init, cat, gc, fsck, import-image, transaction.
import type { Command } from "commander";

export function registerRepoCommands(_program: Command): void {
}
