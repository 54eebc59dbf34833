#include "runtime/process_options.h"

#include "core/sys/log.h"

namespace cryo::cli {

std::vector<OptionSpec> logging_options() {
  return {{{"-o", "--log-file"}, true}, {{"-v", "--verbosity"}, true}};
}

std::string setup_logging(const Args& args, const std::string& images_dir) {
  if (auto v = args.get("verbosity")) {
    try {
      log::set_verbosity(std::stoi(*v));
    } catch (...) {
      return "bad verbosity '" + *v + "'";
    }
  }
  if (auto file = args.get("log-file")) {
    std::string path = (!file->empty() && (*file)[0] == '/') ? *file : images_dir + "/" + *file;
    auto st = log::open_file(path);
    if (!st.ok()) return st.error().message();
  }
  return "";
}

}  // namespace cryo::cli
