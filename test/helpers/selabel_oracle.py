# libselinux oracle for test/boot_selabel_test.ts: reads "MODE PATH\0" records (octal st_mode) on stdin
# and prints one line per record: the label selabel_lookup gives (SELABEL_OPT_PATH = argv[1]) or <<none>>.
import sys

import selinux

opt = selinux.selinux_opt()
opt.type = selinux.SELABEL_OPT_PATH
opt.value = sys.argv[1]
handle = selinux.selabel_open(selinux.SELABEL_CTX_FILE, opt, 1)
out = []
for rec in sys.stdin.buffer.read().split(b"\0"):
    if not rec:
        continue
    mode, path = rec.split(b" ", 1)
    try:
        key = path.decode("utf-8")
    except UnicodeDecodeError:
        out.append("<<not-utf-8>>")  # the bindings take str only
        continue
    try:
        out.append(selinux.selabel_lookup(handle, key, int(mode, 8))[1])
    except OSError:
        out.append("<<none>>")
sys.stdout.write("\n".join(out) + "\n")
