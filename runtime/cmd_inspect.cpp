#include "core/inspect.h"
#include "oci/image/checkpoint_image.h"
#include "runtime/args.h"
#include "runtime/command.h"

#include <sys/stat.h>

#include <cstdio>

namespace cryo::cli {

int cmd_inspect(const GlobalOptions&, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-D", "--images-dir"}, true}, {{"--pages"}, false}, {{"--tls-verify"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error);
  if (!args) return fail(error);
  std::string dir = args->get_or("images-dir", args->positional().empty() ? "" : args->positional()[0]);
  if (dir.empty()) return fail("inspect: name the image directory (cryo inspect DIR)");
  // An image reference (oci:DIR, oci-archive:FILE) or an archive of --export.
  struct stat st;
  bool packed = oci::image::is_reference(dir) || (::stat(dir.c_str(), &st) == 0 && S_ISREG(st.st_mode));
  auto json = packed ? oci::image::inspect_checkpoint_image(dir, args->has("pages"), args->get_or("tls-verify", "")) : inspect_image(dir, args->has("pages"));
  if (!json.ok()) return fail("inspect " + dir + ": " + json.error().message());
  printf("%s\n", json->c_str());
  return 0;
}

}  // namespace cryo::cli
