// Answers the control socket's requests (proto/control.proto) from a Node:
// protobuf stops here; the Node speaks its own structs.
#pragma once

#include "maintainer/daemon/node.h"
#include "proto/control.pb.h"

namespace fm::maintainer {

// `uptime_sec` is reported in status. Never throws; every failure is an
// error reply with its Code.
fortmesh::wire::ControlReply handle_control(Node& node, const fortmesh::wire::ControlRequest& request,
                                            crdt::Millis now, uint64_t uptime_sec);

// The same conversions for the CLI when it runs an admin command itself.
fortmesh::wire::AdminReply to_wire(const AdminOutcome& outcome, const crdt::Replica& replica);
fortmesh::wire::ControlReply error_reply(const Status& status);

}  // namespace fm::maintainer
