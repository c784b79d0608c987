// Where `fortmesh` logs: stderr, always (stdout is for command output).
// Under systemd (JOURNAL_STREAM names our stderr) each line is "<N>message"
// with N the syslog level journald reads, and no timestamp (journald adds
// its own); elsewhere spdlog's usual timestamped lines.
#pragma once

namespace fm::maintainer {

// True when stderr is the journal stream systemd gave us.
bool stderr_is_journal();
void setup_logging();

}  // namespace fm::maintainer
