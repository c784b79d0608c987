// rtnetlink through libmnl: what the daemon does to its WireGuard interface
// besides WireGuard itself (docs/wireguard.md, "rtnetlink"). No `ip`
// subprocesses. Needs CAP_NET_ADMIN in the interface's network namespace.
#pragma once

#include <cstdint>
#include <string>

#include "netauth/address.h"
#include "base/result.h"

namespace fm::maintainer::rtnl {

inline constexpr uint32_t kMtu = 1420;  // 1500 - 80 (WireGuard's own default)

// Sets MTU 1420 and brings the link up, puts `address`/128 on it (no DAD)
// and routes the org's /48 to it. Idempotent: what is already there is
// replaced, not doubled.
Status configure_overlay(const std::string& ifname, const netauth::Address& address, const netauth::Prefix& prefix);

// Creates a link of kind "wireguard" (the kernel backend). EEXIST is success.
Status create_wireguard_link(const std::string& ifname);
Status delete_link(const std::string& ifname);

}  // namespace fm::maintainer::rtnl
