#include "maintainer/ip_port.h"

#include "maintainer/wg_config.h"

namespace fm::maintainer {

Result<IpPort> parse_ip_port(const std::string& option, const std::string& text) {
  const auto e = wg::Endpoint::parse(text);
  if (!e) {
    return Status::error(option + " wants ADDR:PORT with a numeric address ([ADDR]:PORT for IPv6), got \"" + text +
                         "\"");
  }
  IpPort out;
  out.port = e->port;
  if (e->is_v4()) {
    boost::asio::ip::address_v4::bytes_type b;
    std::copy(e->address.begin() + 12, e->address.end(), b.begin());
    out.address = boost::asio::ip::address_v4(b);
  } else {
    boost::asio::ip::address_v6::bytes_type b;
    std::copy(e->address.begin(), e->address.end(), b.begin());
    out.address = boost::asio::ip::address_v6(b);
  }
  return out;
}

}  // namespace fm::maintainer
