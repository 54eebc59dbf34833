#include "runtime/process_options.h"

#include <unistd.h>

#include "core/sys/log.h"
#include "runtime/criu_options.h"

namespace cryo::cli {

std::string work_dir(const Args& args) {
  return args.get_or("work-dir", args.get_or("images-dir", "."));
}

std::string in_work_dir(const Args& args, const std::string& path) {
  if (path.empty() || path[0] == '/') return path;
  return work_dir(args) + "/" + path;
}

std::string setup_logging(const Args& args) {
  for (const auto& fd : args.all("close")) ::close(std::stoi(fd));
  log::set_verbosity(criu::verbosity(args, log::verbosity()));
  if (auto file = args.get("log-file"); file && *file != "-") {
    auto st = log::open_file(in_work_dir(args, *file));
    if (!st.ok()) return st.error().message();
  }
  return "";
}

}  // namespace cryo::cli
