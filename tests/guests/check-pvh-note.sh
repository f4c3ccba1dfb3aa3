#!/bin/sh
# Checks that a probe guest ELF is bootable through PVH: a 64-bit x86-64
# executable with a Xen note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY) whose
# 32-bit entry address lies in an executable PT_LOAD segment, reachable both
# through the section headers and a PT_NOTE program header, and an e_entry
# in an executable segment too.
# Usage: check-pvh-note.sh PROBE.elf
set -eu
elf=${1:?usage: check-pvh-note.sh PROBE.elf}
fail() { echo "check-pvh-note: $elf: $*" >&2; exit 1; }

[ -f "$elf" ] || fail "no such file"
header=$(readelf -hW "$elf") || fail "not an ELF file"
echo "$header" | grep -q 'Class:[[:space:]]*ELF64' || fail "not ELF64"
echo "$header" | grep -q 'Machine:[[:space:]]*Advanced Micro Devices X86-64' || fail "not x86-64"
entry=$(echo "$header" | awk '/Entry point address:/ {print $4}')

# The note's descriptor: "description data: b0 b1 b2 b3", on the Xen note's
# line (readelf -W) or the line after it.
desc=$(readelf -nW "$elf" | awk '
    /^[ \t]*Xen[ \t]/ && (/0x00000012/ || /PHYS32_ENTRY/) { want = 1 }
    want && /description data:/ { sub(/.*description data:[ \t]*/, ""); print; exit }')
[ -n "$desc" ] || fail "no Xen note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY)"
set -- $desc
[ $# -eq 4 ] || [ $# -eq 8 ] || fail "descriptor has $# bytes, expected 4 (or 8)"
pvh_entry=$(printf '0x%s%s%s%s' "$4" "$3" "$2" "$1")

segments=$(readelf -lW "$elf")
# PT_NOTE with a non-zero file size.
echo "$segments" | awk '$1 == "NOTE" && $5 !~ /^0x0+$/ { found = 1 } END { exit !found }' ||
    fail "no non-empty PT_NOTE program header"

# in_exec_load ADDR: ADDR lies in a PT_LOAD segment with the E flag.
in_exec_load() {
    echo "$segments" | awk '$1 == "LOAD" && /E/ { print $3, $6 }' | {
        while read -r vaddr memsz; do
            if [ $(($1)) -ge $((vaddr)) ] && [ $(($1)) -lt $((vaddr + memsz)) ]; then
                exit 0
            fi
        done
        exit 1
    }
}
in_exec_load "$pvh_entry" || fail "PVH entry $pvh_entry is not in an executable PT_LOAD segment"
in_exec_load "$entry" || fail "e_entry $entry is not in an executable PT_LOAD segment"
echo "check-pvh-note: $elf: PVH entry $pvh_entry, e_entry $entry: ok"
