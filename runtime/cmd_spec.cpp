#include <fcntl.h>
#include <sys/stat.h>

#include "core/sys/io.h"
#include "oci/info.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {

int cmd_spec(const GlobalOptions&, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-b", "--bundle"}, true}, {{"--rootless"}, false}};
  std::string error;
  auto args = parse(kSpecs, argv, &error);
  if (!args) return oci::report_error("spec: " + error);
  std::string path = args->get_or("bundle", ".") + "/config.json";
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) return oci::report_error("spec: " + path + " already exists");
  auto fd = open_file(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (!fd.ok()) return oci::report_error("spec: " + fd.error().message());
  if (auto s = write_all(fd->get(), oci::default_spec_json(args->has("rootless"))); !s.ok())
    return oci::report_error("spec: " + s.error().message());
  return 0;
}

}  // namespace cryo::cli
