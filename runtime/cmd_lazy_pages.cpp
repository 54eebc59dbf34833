#include <sys/stat.h>
#include <unistd.h>

#include "core/lazy/daemon.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/page_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {

const char* const kLazyPagesUsage =
    "usage: cryo lazy-pages -D DIR [-W WORKDIR] [--daemon] [--status-fd FD]\n"
    "                       [--page-server --address ADDR --port PORT [--tls --tls-cert FILE --tls-key FILE\n"
    "                        [--tls-cacert FILE]]]\n\n"
    "Serves the memory of the tree `cryo restore --lazy-pages -D DIR` restores: start it first. The\n"
    "restore hands it each process's userfaultfd over WORKDIR/lazy-pages.socket (WORKDIR is DIR by\n"
    "default); a page a process touches first is copied in at once, the others in the background,\n"
    "and it exits (0) once every process has all its memory. Pages come from DIR/pages.img, checked\n"
    "against their checksums first. Should it die before, the restored tree is killed (it never runs\n"
    "with memory missing). --daemon returns once it listens; --status-fd FD gets one zero byte then.\n\n"
    "With --page-server the pages of a lazy migration come from its source, `cryo dump --lazy-pages` at\n"
    "ADDR:PORT, which keeps the frozen tree until this daemon says it has every page (then the source\n"
    "exits); should the source go away first, the restored tree is killed and this exits 1.\n";

int cmd_lazy_pages(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse_page_command("lazy-pages", argv, &error);
  if (!args) return fail(error);
  lazy::DaemonOptions options;
  if (args->has("page-server")) {
    options.page_server = page_endpoint(*args, true, &error);
    if (!error.empty()) return fail("lazy-pages: --page-server: " + error);
  }
  options.images_dir = args->get_or("images-dir", ".");
  options.socket_path = in_work_dir(*args, "lazy-pages.socket");
  if (auto e = setup_logging(*args); !e.empty()) return fail("lazy-pages: " + e);
  bool daemon = args->has("daemon");
  auto st = lazy::run_lazy_pages(options, [&] {
    if (daemon) {
      pid_t child = ::fork();
      if (child > 0) _exit(0);
      ::setsid();
    }
    report_ready(*args);
  });
  if (!st.ok()) return fail("lazy-pages: " + st.error().message());
  return 0;
}

}  // namespace cryo::cli
