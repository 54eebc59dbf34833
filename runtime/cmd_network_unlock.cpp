#include <cstdio>

#include "core/restore.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

// The network lock a dump leaves for its restore, dropped by hand: for a
// checkpoint that will not be restored, or after a restore that failed.
int cmd_network_unlock(const GlobalOptions&, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-D", "--images-dir"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error);
  if (!args) return fail(error);
  std::string dir = args->get_or("images-dir", "");
  if (dir.empty()) return fail("network-unlock: name the image directory (-D DIR)");
  auto table = network_unlock(dir);
  if (!table.ok()) return fail("network-unlock " + dir + ": " + table.error().message());
  if (table->empty())
    printf("%s holds no network lock\n", dir.c_str());
  else
    printf("network lock %s removed\n", table->c_str());
  return 0;
}

}  // namespace cryo::cli
