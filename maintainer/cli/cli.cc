#include "maintainer/cli/cli.h"

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>

#include "maintainer/cli/commands.h"
#include "maintainer/cli/logging.h"

#ifndef FORTMESH_VERSION
#error "FORTMESH_VERSION is set by CMake (the project's version)"
#endif

namespace fm::maintainer {
namespace {

constexpr const char* kVersionLine = "fortmesh " FORTMESH_VERSION;
constexpr const char* kDefaultConfig = "/etc/fortmesh/fortmesh.conf";

// The config file is flat (docs/install.md): state-dir for every command,
// every other key one of run's options. CLI11 reads a file for the main app
// only, into subcommands by section; this puts the keys that are not the
// main app's into run's section.
class FlatConfig final : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> from_config(std::istream& in) const override {
    auto items = CLI::ConfigTOML::from_config(in);
    for (auto& item : items) {
      if (!item.parents.empty()) {
        throw CLI::ConfigError("[" + item.parents.front() + "]: the file has no sections, only `name = value` lines");
      }
      if (item.name != "state-dir") item.parents = {"run"};
    }
    return items;
  }
};

// The whole command table on `app`: every subcommand, and the options that
// work before the subcommand too (`fortmesh --state-dir D status`).
void build(CLI::App& app, cli::Context& ctx, std::vector<cli::Command>& commands) {
  app.require_subcommand(1);
  app.set_version_flag("--version", kVersionLine, "print the version and exit");
  ctx.add_state_dir(&app);
  const char* config_env = std::getenv("FORTMESH_CONFIG");
  app.set_config("--config", config_env != nullptr ? config_env : kDefaultConfig,
                 "read options from FILE (state-dir, and run's options as `name = value`); flags win.\n"
                 "Default: $FORTMESH_CONFIG, else " + std::string(kDefaultConfig) + " when it exists");
  app.config_formatter(std::make_shared<FlatConfig>());
  app.allow_config_extras(CLI::config_extras_mode::error);
  cli::add_identity_commands(app, ctx, commands);
  cli::add_org_commands(app, ctx, commands);
  cli::add_admin_commands(app, ctx, commands);
  cli::add_query_commands(app, ctx, commands);
  cli::add_daemon_commands(app, ctx, commands);
  auto* version_cmd = app.add_subcommand("version", "print the version");
  commands.push_back({"version", version_cmd, [] {
                        std::printf("%s\n", kVersionLine);
                        return Status::ok();
                      }});
}

// A usage error in one line. A word where a command belongs is named: CLI11
// itself says only that an argument was not expected.
std::string usage_error(const CLI::App& app, const CLI::ParseError& e, int argc, char** argv) {
  bool subcommand_given = false;
  for (const auto* sub : app.get_subcommands([](const CLI::App* s) { return s->parsed(); })) {
    subcommand_given = sub != nullptr;
  }
  if (!subcommand_given) {
    // The first word that is neither an option nor the value of a global one.
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (a == "--state-dir" || a == "--config") {
        ++i;
        continue;
      }
      if (a.starts_with("-")) continue;
      return "unknown command '" + a + "'";
    }
  }
  // CLI11 names a key it does not know "INI was not able to parse run.KEY".
  const std::string what = e.what();
  if (auto at = what.find("parse run."); at != std::string::npos) {
    return "unknown key '" + what.substr(at + 10) + "' in the config file";
  }
  return what;
}

}  // namespace

int run_cli(int argc, char** argv) {
  setup_logging();
  CLI::App app{"fortmesh: node daemon and admin tool for a self-governing WireGuard mesh.\n"
               "Admin commands go through the running daemon's control socket when it runs, else open the store.\n"
               "FORTMESH_STATE_DIR sets the state directory (--state-dir wins)."};
  cli::Context ctx;
  std::vector<cli::Command> commands;
  build(app, ctx, commands);
  // `run` re-reads its command line and config file on SIGHUP with a fresh
  // table, the way it read them at start.
  ctx.reparse = [argc, argv]() -> Result<DaemonOptions> {
    CLI::App again;
    cli::Context fresh;
    std::vector<cli::Command> unused;
    build(again, fresh, unused);
    try {
      again.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
      return Status::error(Code::invalid_argument, e.what());
    }
    if (!fresh.run_options) return Status::error("not a `run` command line");
    DaemonOptions o = *fresh.run_options;
    o.state_dir = fresh.state_dir;
    return o;
  };

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "fortmesh: %s (see --help)\n", usage_error(app, e, argc, argv).c_str());
    return 2;
  }
  for (const auto& c : commands) {
    if (!c.app->parsed()) continue;
    if (ctx.state_dir.empty() && c.name != "version") {
      std::fprintf(stderr, "fortmesh: %s: --state-dir is empty: give a directory, or leave the option out for %s\n",
                   c.name.c_str(), kDefaultStateDir);
      return 2;
    }
    // The service runs as the state directory's owner (fortmesh.service):
    // root's commands act as that owner, so that what they write stays the
    // daemon's. `run` keeps root's capabilities, `guard` its ports (it
    // only reads the key).
    if (c.name != "run" && c.name != "guard" && c.name != "version") {
      if (Status st = cli::act_as_owner(ctx.state_dir); !st) {
        std::fprintf(stderr, "fortmesh: %s: %s\n", c.name.c_str(), st.message().c_str());
        return 1;
      }
    }
    if (Status st = c.run(); !st) {
      std::fprintf(stderr, "fortmesh: %s: %s\n", c.name.c_str(), st.message().c_str());
      return 1;
    }
    return 0;
  }
  return 2;  // require_subcommand makes this unreachable
}

}  // namespace fm::maintainer
