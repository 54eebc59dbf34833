// cryo as `criu`: what runc (--criu PATH), Podman's go-criu and scripts run
// under that name. CRIU's process verbs are cryo's own (main.cpp runs them);
// this answers what only CRIU's binary has: the RPC service (`swrk FD`) and
// its version line, and refuses CRIU's other services by name.
#include <cstdio>
#include <string>
#include <vector>

#include "core/image/image.h"
#include "runtime/command.h"
#include "runtime/criu_rpc/swrk.h"

namespace cryo::cli {

void print_criu_version() {
  // CRIU's own first line, which tools parse ("Version: X.Y"), then cryo's.
  printf("Version: %d.%d\ncryo %s answering as criu (image format version %u)\n", criu_rpc::kCriuMajor,
         criu_rpc::kCriuMinor, CRYO_VERSION, static_cast<unsigned>(image::kFormatVersion));
}

std::optional<int> criu_entry(const std::vector<std::string>& args) {
  std::string verb;
  for (const auto& w : args)
    if (!w.starts_with("-")) {
      verb = w;
      break;
    }
  if (verb == "swrk") {
    size_t at = 0;
    while (args[at] != "swrk") at++;
    const std::string fd = at + 1 < args.size() ? args[at + 1] : "";
    if (fd.empty() || fd.find_first_not_of("0123456789") != std::string::npos || at + 2 != args.size())
      return fail("criu swrk: want one descriptor number: criu swrk FD");
    return criu_rpc::serve(std::stoi(fd));
  }
  if (verb.empty()) {
    for (const auto& w : args)
      if (w == "-V" || w == "--version") {
        print_criu_version();
        return 0;
      }
  }
  for (const char* service : {"service", "page-server", "lazy-pages", "exec", "show", "cpuinfo", "image-streamer"})
    if (verb == service)
      return fail("criu " + verb + " is not supported by cryo: it answers dump, pre-dump, restore, check and swrk");
  return std::nullopt;
}

}  // namespace cryo::cli
