// What `kdom restore FILE key=value...` may change of a saved domain's config. The restored
// machine carries on from the saved one: the guest already has its memory, vCPUs, kernel and
// command line and knows its devices (their names, MACs, access modes, the vsock CID), so those
// stay as saved; what only the host side sees may change: the name, the lifecycle actions,
// where a disk's image is, which bridge or TAP a NIC's traffic goes through.
#pragma once

#include <string>
#include <vector>

#include "config/domain_config.h"

namespace kdom::config {

// Throws Error naming the first setting in which `changed` differs from `saved` in a way a
// restored machine cannot take ("memory cannot change on a restore (the saved domain has
// 256 MiB)"): memory, maxmem, vcpus, maxvcpus, kernel, ramdisk, cmdline, rng, balloon
// (present or not), vsock (the CID), uuid; the disks' number and each one's vdev and access
// mode; the NICs' number and each one's devid and MAC. Anything else may differ: the name,
// on_poweroff/on_reboot/on_crash, a disk's target and `shared` flag, a NIC's bridge, TAP
// (vifname), rate and ip, the balloon's statistics interval. Disks and NICs are compared in
// the order of their lists.
void check_restorable_changes(const DomainConfig& saved, const DomainConfig& changed);

// The config a saved domain is restored with: `saved` with xl.cfg `key=value` overrides
// applied (apply_xl_overrides). A `disk=` or `vif=` override lists every disk or NIC again, in
// the saved order: a disk given without a vdev takes the saved one's at the same place, a NIC
// without a MAC the saved one's, and every NIC the saved devid at its place (xl.cfg numbers
// NICs by their place in the list; the saved domain's may have gaps). Then the result is
// checked (check_restorable_changes) and every disk target that changed must be an absolute
// path (kdomd does not know the client's current directory). Throws Error.
DomainConfig restored_config(const DomainConfig& saved, const std::vector<std::string>& overrides);

}  // namespace kdom::config
