// Builds the small OCI image that ships with the project (examples/demo-image), used by the
// README's first command (`deno task demo`). Deterministic: same bytes on every run.
//   deno run -A scripts/make_demo_image.ts [OUTDIR]
import { addImage, tarDirectory } from "../test/helpers/oci_builder.ts";

const out = Deno.args[0] ?? new URL("../examples/demo-image", import.meta.url).pathname;
const work = await Deno.makeTempDir({ prefix: "demo-image-" });

async function write(path: string, text: string, mode = 0o644) {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeTextFile(path, text);
  await Deno.chmod(path, mode);
}

try {
  const base = `${work}/base`;
  for (const d of ["usr/bin", "usr/share/doc/demo", "etc", "run", "tmp", "var/log"]) {
    await Deno.mkdir(`${base}/${d}`, { recursive: true });
  }
  await write(`${base}/etc/os-release`, 'NAME="cfsctl-ts demo"\nID=demo\nVERSION_ID=1\n');
  await write(`${base}/etc/motd`, "Welcome to the composefs demo image (layer 1).\n");
  await write(`${base}/etc/obsolete.conf`, "this file is deleted by the second layer\n");
  await write(`${base}/usr/bin/hello`, "#!/bin/sh\necho 'hello from a composefs image'\n", 0o755);
  await write(
    `${base}/usr/share/doc/demo/README`,
    "This tree was pulled from an OCI image, stored as content-addressed objects,\n" +
      "and is served by the kernel from an EROFS metadata image through overlayfs.\n".repeat(20),
  );
  await Deno.symlink("hello", `${base}/usr/bin/hi`);
  await Deno.chmod(`${base}/tmp`, 0o1777);

  const top = `${work}/top`;
  await Deno.mkdir(`${top}/etc`, { recursive: true });
  await write(`${top}/etc/motd`, "Welcome to the composefs demo image (layer 2 replaced this file).\n");
  await write(`${top}/etc/.wh.obsolete.conf`, "");
  await Deno.mkdir(`${top}/var/log`, { recursive: true });
  await write(`${top}/var/log/.wh..wh..opq`, "");
  await write(`${top}/var/log/install.log`, "installed by layer 2\n");

  await Deno.remove(out, { recursive: true }).catch(() => {});
  const img = await addImage(out, {
    tag: "latest",
    layers: [
      { tar: await tarDirectory(base, { rootOwner: true }), compression: "gzip" },
      { tar: await tarDirectory(top, { rootOwner: true }), compression: "zstd" },
    ],
  });
  console.log(`wrote ${out}: manifest ${img.manifestDigest}`);
} finally {
  await Deno.remove(work, { recursive: true });
}
