// Answers the control socket's requests (proto/control.proto) from a Node:
// protobuf stops here; the Node speaks its own structs.
#pragma once

#include <optional>

#include "maintainer/daemon/node.h"
#include "proto/control.pb.h"

namespace fm::maintainer {

// What the daemon's shell knows beside the Node, for status.
struct ShellStats {
  uint64_t uptime_sec = 0;
  uint64_t gossip_unknown_sources = 0;   // datagrams from addresses that name no member
  uint64_t gossip_wrong_interface = 0;   // datagrams that did not arrive through WireGuard
  // member_status requests (what `fortmesh guard` asks for each conn_auth
  // handshake it completes) by answer: active, or not (any other).
  uint64_t member_checks_active = 0, member_checks_refused = 0;
  // A lighthouse's relay, filled in by the shell (nothing: not serving).
  std::optional<fortmesh::wire::RelayStatus> relay;
};

// A Reject reason as a metric label and a status key: "bad_signature", ...
const char* reject_label(crdt::Reject reason);

// Never throws; every failure is an error reply with its Code.
fortmesh::wire::ControlReply handle_control(Node& node, const fortmesh::wire::ControlRequest& request,
                                            crdt::Millis now, const ShellStats& shell = {});

// The same conversions for the CLI when it runs an admin command itself.
fortmesh::wire::AdminReply to_wire(const AdminOutcome& outcome, const crdt::Replica& replica);
fortmesh::wire::ControlReply error_reply(const Status& status);

}  // namespace fm::maintainer
