// Version and format information printed by `--version` (kept free of imports: it is loaded at start-up).
export const VERSION = "0.1.0";
export const VERSION_TEXT = `cfsctl-ts ${VERSION}
formats: composefs EROFS V0 and V1 (C mkcomposefs 1.0.8 compatible), V2 (composefs-rs 0.7.0); repository meta.json version 1; splitstream version 0
hashes: fs-verity sha256, sha512 (4 KiB blocks)`;
