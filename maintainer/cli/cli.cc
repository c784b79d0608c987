#include "maintainer/cli/cli.h"

#include <cstdio>

#include "maintainer/cli/commands.h"

namespace fm::maintainer {

int run_cli(int argc, char** argv) {
  CLI::App app{"fortmesh: node daemon and admin tool for a self-governing WireGuard mesh.\n"
               "Admin commands go through the running daemon's control socket when it runs, else open the store."};
  app.require_subcommand(1);
  cli::Context ctx;
  std::vector<cli::Command> commands;
  cli::add_identity_commands(app, ctx, commands);
  cli::add_org_commands(app, ctx, commands);
  cli::add_admin_commands(app, ctx, commands);
  cli::add_query_commands(app, ctx, commands);
  cli::add_daemon_commands(app, ctx, commands);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "fortmesh: %s (see --help)\n", e.what());
    return 2;
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    if (Status st = c.run(); !st) {
      std::fprintf(stderr, "fortmesh: %s: %s\n", c.name.c_str(), st.message().c_str());
      return 1;
    }
    return 0;
  }
  return 2;  // require_subcommand makes this unreachable
}

}  // namespace fm::maintainer
