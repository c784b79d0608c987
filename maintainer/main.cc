#include "maintainer/cli/cli.h"

int main(int argc, char** argv) { return fm::maintainer::run_cli(argc, argv); }
