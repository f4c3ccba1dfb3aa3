#!/usr/bin/env bash
# Bad input to `kdom run`: each case must end with one clear error line naming the problem
# and a non-zero exit, within a few seconds (no crash, no hang). kdom checks what the user
# named before it opens /dev/kvm, so these need no KVM; the cases that do (a TAP held by a
# running domain, /dev/kvm without permission) are in bad-input-kvm.sh. Also: `kdom` with no
# command (usage on stderr, exit 1) and `kdom --version`.
#   bad-input.sh KDOM_BINARY PROBE_ELF
set -uo pipefail
kdom=$1
probe=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
. "$(dirname "$0")/lib-expect.sh"

head -c 200000 /dev/urandom >"$work/garbage"
head -c 600 "$probe" >"$work/truncated.elf"
# A bzImage header whose kernel part is cut off: the setup header says more than is there.
printf 'MZ' >"$work/truncated-bzimage"
head -c 4000 /dev/zero >>"$work/truncated-bzimage"
# poke OFFSET BYTES...: writes bytes (octal escapes) at OFFSET
poke() { printf "$2" | dd of="$work/truncated-bzimage" bs=1 seek=$(($1)) conv=notrunc status=none; }
poke 0x1f1 '\004'             # setup_sects
poke 0x1f4 '\000\000\001\000' # syssize: 1 MiB of kernel, not present
poke 0x201 '\152'             # header length
poke 0x202 'HdrS'
poke 0x206 '\017\002'         # boot protocol 2.15
poke 0x236 '\001\000'         # xloadflags: 64-bit entry
head -c $((300 * 1024 * 1024)) /dev/zero >"$work/huge-initrd"

expect unknown-option "not expected" -- "$kdom" run --bogus
expect unknown-command "unknown command" -- "$kdom" frobnicate
"$kdom" >"$work/out" 2>"$work/err"
status=$?
judge no-command "no command: exit 1, the usage on stderr" "no command: exit $status, stderr '$(head -c 200 "$work/err")', stdout '$(head -c 200 "$work/out")'" -- \
  sh -c "[ $status -eq 1 ] && grep -q '^usage: kdom run' '$work/err' && [ ! -s '$work/out' ]"
version=$("$kdom" --version 2>&1)
status=$?
judge version "kdom --version: '$version'" "kdom --version: exit $status, printed '$version'" -- \
  sh -c "[ $status -eq 0 ] && echo '$version' | grep -qx 'kdom [0-9]*\.[0-9]*\.[0-9]*'"
expect kernel-missing "cannot read kernel" -- "$kdom" run --kernel "$work/nope"
expect kernel-garbage "neither an ELF file nor a bzImage" -- "$kdom" run --kernel "$work/garbage"
expect kernel-truncated-elf "truncated" -- "$kdom" run --kernel "$work/truncated.elf"
expect kernel-truncated-bzimage "truncated" -- "$kdom" run --kernel "$work/truncated-bzimage"
expect initrd-missing "cannot read initrd" -- "$kdom" run --kernel "$probe" --initrd "$work/nope"
expect initrd-too-large "larger than guest memory" -- "$kdom" run --kernel "$probe" --initrd "$work/huge-initrd" --memory 256
expect memory-zero "memory must be at least" -- "$kdom" run --kernel "$probe" --memory 0
expect memory-not-a-number "memory" -- "$kdom" run --kernel "$probe" --memory lots
expect memory-above-host "more than this host has" -- "$kdom" run --kernel "$probe" --memory 16000000
expect vcpus-zero "vcpus must be at least 1" -- "$kdom" run --kernel "$probe" --vcpus 0
expect vcpus-above-limit "limit" -- "$kdom" run --kernel "$probe" --vcpus 100000
truncate -s 1M "$work/readonly.img" && chmod 444 "$work/readonly.img"
expect disk-missing "disk image '$work/nope.img' does not exist" -- "$kdom" run --kernel "$probe" --disk "$work/nope.img"
expect disk-read-only-file "read-only" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img"
expect disk-bad-setting "unknown setting" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,rw"
expect disk-twice "given twice" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,ro" --disk "$work/readonly.img,ro"
expect disk-zero-queues "queues must be between 1 and 64" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,ro,queues=0"
expect disk-bad-poll "poll must be a number of microseconds from 0 to 1000, not '5s'" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,ro,poll=5s"
expect disk-bad-rate "bw (bytes per second) must be a whole number" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,ro,bw=fast"
expect net-bad-rate "pps (frames per second) must be a whole number" -- "$kdom" run --kernel "$probe" --net "tap=kdomx0,pps=many"
expect duplicate-device-id "device id 'd0' is used twice" -- "$kdom" run --kernel "$probe" --disk "$work/readonly.img,ro,id=d0" --disk "$work/nope.img,id=d0"
expect console-bad "console must be" -- "$kdom" run --kernel "$probe" --console carrier-pigeon
expect console-file-unwritable "cannot open console file" -- "$kdom" run --kernel "$probe" --console file:/nonexistent-dir/x
expect hvc-bad "hvc must be" -- "$kdom" run --kernel "$probe" --hvc serial
expect hvc-and-console-stdio "both want the terminal" -- "$kdom" run --kernel "$probe" --hvc stdio
expect hvc-file-unwritable "cannot open console file" -- "$kdom" run --kernel "$probe" --hvc file:/nonexistent-dir/x
expect vsock-cid-reserved "is reserved" -- "$kdom" run --kernel "$probe" --vsock "cid=2,socket=$work/v.sock"
expect vsock-cid-too-large "too large" -- "$kdom" run --kernel "$probe" --vsock "cid=4294967295,socket=$work/v.sock"
expect vsock-cid-not-a-number "cid must be a number" -- "$kdom" run --kernel "$probe" --vsock "cid=three,socket=$work/v.sock"
expect vsock-no-socket "missing socket=" -- "$kdom" run --kernel "$probe" --vsock cid=3
expect vsock-no-cid "missing cid=" -- "$kdom" run --kernel "$probe" --vsock "socket=$work/v.sock"
expect vsock-bad-setting "unknown setting" -- "$kdom" run --kernel "$probe" --vsock "cid=3,socket=$work/v.sock,port=1"
expect vsock-socket-dir-missing "cannot bind vsock socket" -- "$kdom" run --kernel "$probe" --vsock "cid=3,socket=/nonexistent-dir/v.sock"
expect vsock-socket-path-too-long "too long" -- "$kdom" run --kernel "$probe" --vsock "cid=3,socket=$work/$(printf 'x%.0s' $(seq 120)).sock"
echo keep >"$work/exists.sock"
expect vsock-socket-exists "already exists" -- "$kdom" run --kernel "$probe" --vsock "cid=3,socket=$work/exists.sock"
judge vsock-socket-exists-kept "the existing file was left alone" \
  "the existing file at the --vsock socket path was changed or removed" -- \
  [ "$(cat "$work/exists.sock" 2>/dev/null)" = keep ]
expect balloon-bad-setting "unknown setting" -- "$kdom" run --kernel "$probe" --balloon target=64,inflate
expect balloon-bad-target "target must be a number" -- "$kdom" run --kernel "$probe" --balloon target=lots
expect balloon-target-above-memory "larger than guest memory" -- "$kdom" run --kernel "$probe" --memory 128 --balloon target=256
touch "$work/taken.sock"
expect control-path-exists "already exists" -- "$kdom" run --kernel "$probe" --control "$work/taken.sock"
judge control-path-kept "the existing file was left in place" \
  "kdom removed an existing file at the --control path" -- [ -f "$work/taken.sock" ]
expect control-dir-missing "cannot create control socket" -- "$kdom" run --kernel "$probe" --control "$work/no-such-dir/ctl"
expect balloon-no-socket "no control socket" -- "$kdom" balloon --control "$work/nope.sock" stats
expect balloon-no-control "needs --control" -- "$kdom" balloon set 64
expect shutdown-no-control "needs --control" -- "$kdom" shutdown
expect shutdown-no-socket "no control socket" -- "$kdom" shutdown --control "$work/nope.sock"
expect shutdown-extra-word "unexpected 'now'" -- "$kdom" shutdown --control "$work/nope.sock" now
expect shutdown-bad-wait "--wait must be a whole number of seconds" -- "$kdom" shutdown --control "$work/nope.sock" --wait soon
expect balloon-bad-mib "whole number of MiB" -- "$kdom" balloon --control "$work/nope.sock" set much
expect balloon-bad-subcommand "expected 'set MIB' or 'stats'" -- "$kdom" balloon --control "$work/nope.sock" pop
expect net-bad-mac "MAC address" -- "$kdom" run --kernel "$probe" --net tap=kdombad0,mac=52:54:00:12:34
expect net-multicast-mac "multicast" -- "$kdom" run --kernel "$probe" --net tap=kdombad0,mac=01:00:5e:00:00:01
expect net-bad-setting "unknown setting" -- "$kdom" run --kernel "$probe" --net tap=kdombad0,queues=4
expect net-no-backend "needs tap=NAME or fd=N" -- "$kdom" run --kernel "$probe" --net mac=52:54:00:12:34:56
expect net-fd-not-open "is not an open file descriptor" -- "$kdom" run --kernel "$probe" --net fd=77
expect net-fd-not-tap "is not a TAP device" -- "$kdom" run --kernel "$probe" --net fd=3 3<"$probe"
expect net-name-too-long "not a valid interface name" -- "$kdom" run --kernel "$probe" --net tap=a-name-longer-than-15
if [ -c /dev/net/tun ] && [ "$(id -u)" -eq 0 ]; then
  expect net-not-a-tap "not a TAP device" -- "$kdom" run --kernel "$probe" --net tap=lo
  if command -v setpriv >/dev/null; then
    # root without CAP_NET_ADMIN: /dev/kvm opens, creating a TAP does not.
    expect net-no-permission "no permission to create or attach it" -- \
      setpriv --bounding-set=-net_admin --inh-caps=-net_admin "$kdom" run --kernel "$probe" --net tap=kdomnoperm0
  fi
fi
if command -v unshare >/dev/null; then
  # A /dev without kvm in it, in a private mount namespace.
  expect no-dev-kvm "/dev/kvm does not exist" -- unshare --mount sh -c "mount -t tmpfs none /dev && exec \"$kdom\" run --kernel \"$probe\""
  # What the user named is checked before /dev/kvm is opened: a missing disk is named as such
  # even where there is no KVM.
  expect disk-before-kvm "disk image '$work/nope.img' does not exist" -- \
    unshare --mount sh -c "mount -t tmpfs none /dev && exec \"$kdom\" run --kernel \"$probe\" --disk \"$work/nope.img\""
  # The sockets a start made before it failed (on /dev/kvm) are removed again.
  expect sockets-removed "/dev/kvm does not exist" -- unshare --mount sh -c \
    "mount -t tmpfs none /dev && exec \"$kdom\" run --kernel \"$probe\" --control \"$work/c.sock\" --vsock cid=3,socket=\"$work/v.sock\""
  left=$(ls "$work"/c.sock "$work"/v.sock 2>/dev/null | tr '\n' ' ')
  judge sockets-removed-files "no control or vsock socket left behind" "a failed start left $left" -- [ -z "$left" ]
fi

# The xl-style verbs, with no kdomd running: $KDOM_SOCKET names a socket that does not exist.
printf 'name = "web"\nmemory = lots\nkernel = "/boot/vmlinuz"\n' >"$work/bad.cfg"
expect xl-list-no-daemon "cannot reach kdomd at $work/no-kdomd.sock: No such file or directory (is kdomd running?)" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" list
expect xl-socket-option-no-daemon "cannot reach kdomd at $work/other.sock" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" --socket "$work/other.sock" destroy web
expect xl-create-missing-file "cannot read xl.cfg '$work/nope.cfg'" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" create "$work/nope.cfg"
expect xl-create-dry-run-bad-cfg "$work/bad.cfg:2" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" create -n "$work/bad.cfg"
expect xl-create-no-file "kdom create needs an xl.cfg file" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" create -p
expect xl-mem-set-bad-unit "invalid memory size '12q'" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" mem-set x 12q
expect xl-mem-set-below-1mib "less than 1 MiB" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" mem-set x 512k
expect xl-rename-one-arg "usage: kdom rename DOM NEWNAME" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" rename web
expect xl-list-bad-option "usage: kdom list" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" list --bogus
expect xl-shutdown-dom-and-all "give DOM or -a, not both" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" shutdown -a web
expect xl-domname-not-an-id "is not a domain id" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" domname web
expect xl-socket-no-command "--socket needs a command" -- "$kdom" --socket "$work/k.sock"
# Save and restore: a file that is not a snapshot, one cut short, options that cannot go with
# --restore, and the verbs' own misuse; refused before anything runs (no KVM needed).
printf 'KDOMSNAP\002\000\000\000\000\000\000\000' >"$work/v2.snap"
head -c 10 "$work/v2.snap" >"$work/cut.snap"
expect restore-missing "cannot open snapshot" -- "$kdom" run --restore "$work/none.snap"
expect restore-garbage "is not a kdom snapshot" -- "$kdom" run --restore "$work/garbage"
expect restore-version "version 2" -- "$kdom" run --restore "$work/v2.snap"
expect restore-cut "truncated" -- "$kdom" run --restore "$work/cut.snap"
expect restore-with-memory "--memory cannot be given with it" -- "$kdom" run --restore "$work/v2.snap" --memory 64
expect paused-without-restore "--paused is for --restore" -- "$kdom" run --paused
# A live migration's destination (--incoming-fd N): N must be an fd number, open for reading,
# not 0-2; the options are --restore's; a stream that is no snapshot or is cut short is refused.
expect incoming-fd-not-open "--incoming-fd 97 is not an open file descriptor" -- "$kdom" run --incoming-fd 97
expect incoming-fd-a-path "incoming-fd" -- "$kdom" run --incoming-fd "$work/v2.snap"
expect incoming-fd-stdout "--incoming-fd 1 is standard input, output or error" -- "$kdom" run --incoming-fd 1
expect incoming-fd-write-only "--incoming-fd 3 is not open for reading" -- \
  sh -c 'exec "$0" run --incoming-fd 3 3>"$1"' "$kdom" "$work/write-only"
expect incoming-with-memory "--incoming-fd takes the domain from the incoming stream: --memory cannot be given with it" -- \
  "$kdom" run --incoming-fd 3 --memory 64
expect incoming-and-restore "--restore and --incoming-fd cannot both be given" -- \
  "$kdom" run --incoming-fd 3 --restore "$work/v2.snap"
expect incoming-garbage "snapshot 'the incoming migration (fd 3)' is not a kdom snapshot" -- \
  sh -c 'exec "$0" run --incoming-fd 3 3<"$1"' "$kdom" "$work/garbage"
expect incoming-cut "snapshot 'the incoming migration (fd 3)' is truncated" -- \
  sh -c 'head -c 10 "$1" | exec "$0" run --incoming-fd 3 3<&0 0</dev/null' "$kdom" "$work/v2.snap"
expect save-c-and-p "-c and -p cannot both be given" -- "$kdom" save -c -p --control "$work/c.sock" "$work/s.snap"
expect save-control-two-files "needs FILE (only)" -- "$kdom" save --control "$work/c.sock" web "$work/s.snap"
expect save-control-missing "no control socket" -- "$kdom" save --control "$work/c.sock" "$work/s.snap"
expect xl-save-one-arg "kdom save needs DOM and FILE" -- env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" save web
# kdom restore's settings are checked before kdomd is asked (whether the saved domain can take
# them is kdomd's to say): a setting without '=', an unknown key, a string without quotes.
expect xl-restore-setting-no-equals "command line: expected '=' after 'memory'" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" restore "$work/v2.snap" memory
expect xl-restore-setting-unknown-key "command line: unknown key 'memroy'" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" restore "$work/v2.snap" memroy=512
expect xl-restore-setting-unquoted "must be a number, a list or a string in quotes, found 'preserve'" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" restore "$work/v2.snap" on_crash=preserve
expect xl-restore-name-twice "kdom restore: name is given twice" -- \
  env KDOM_SOCKET="$work/no-kdomd.sock" "$kdom" restore "$work/v2.snap" name=a name=b
printf 'name = "web"\nmemory = 256\nkernel = "/boot/vmlinuz"\n' >"$work/good.cfg"
"$kdom" create -n "$work/good.cfg" memory=512 >"$work/out" 2>"$work/err"
status=$?
judge xl-create-dry-run "kdom create -n prints the config, with the override, and needs no daemon" \
  "kdom create -n: exit $status, stdout '$(head -c 300 "$work/out")', stderr '$(head -c 200 "$work/err")'" -- \
  sh -c "[ $status -eq 0 ] && grep -q '\"memory_mib\": 512' '$work/out' && grep -qx 'Parsing config from $work/good.cfg' '$work/err'"
"$kdom" list --help >"$work/out" 2>"$work/err"
status=$?
judge xl-help "kdom list --help: exit 0 and the verb's usage" "kdom list --help: exit $status, stdout '$(head -c 300 "$work/out")'" -- \
  sh -c "[ $status -eq 0 ] && grep -q 'usage: kdom list' '$work/out'"

echo "bad-input: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
