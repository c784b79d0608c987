// The `fortmesh` command (docs/cli.md). Exit 0 on success, 1 on
// failure with one clear line on stderr, 2 on a usage error.
#pragma once

namespace fm::maintainer {

int run_cli(int argc, char** argv);

}  // namespace fm::maintainer
