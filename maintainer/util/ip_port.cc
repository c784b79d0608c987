#include "maintainer/util/ip_port.h"

#include <charconv>

namespace fm::maintainer {

Result<IpPort> parse_ip_port(const std::string& option, const std::string& text) {
  auto fail = [&] {
    return Status::error(option + " wants ADDR:PORT with a numeric address ([ADDR]:PORT for IPv6), got \"" + text +
                         "\"");
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) return fail();
  std::string host = text.substr(0, colon);
  const std::string port_text = text.substr(colon + 1);
  const bool bracketed = host.front() == '[';
  if (bracketed) {
    if (host.size() < 3 || host.back() != ']') return fail();
    host = host.substr(1, host.size() - 2);
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc() || end != port_text.data() + port_text.size() || port == 0 || port > 65535) return fail();
  boost::system::error_code bad;
  const auto address = boost::asio::ip::make_address(host, bad);
  // IPv6 only in brackets, IPv4 never: "::1:80" would be ambiguous.
  if (bad || address.is_v6() != bracketed) return fail();
  return IpPort{address, static_cast<uint16_t>(port)};
}

}  // namespace fm::maintainer
