// "ADDR:PORT" as the command line gives it (--gossip-listen, guard's
// --listen, --to, --connect): a numeric IPv4 address, or an IPv6 address in
// brackets, and a port 1..65535. No names: nothing is resolved.
#pragma once

#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <string>

#include "base/result.h"

namespace fm::maintainer {

struct IpPort {
  boost::asio::ip::address address;
  uint16_t port = 0;
};

// `option` names the flag in the error ("--listen: ...").
Result<IpPort> parse_ip_port(const std::string& option, const std::string& text);

}  // namespace fm::maintainer
