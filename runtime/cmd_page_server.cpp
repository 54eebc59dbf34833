#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "core/pageserver/page_server.h"
#include "core/sys/log.h"
#include "runtime/command.h"
#include "runtime/criu_options.h"
#include "runtime/page_options.h"
#include "runtime/process_options.h"

namespace cryo::cli {

const char* const kPageServerUsage =
    "usage: cryo page-server -D DIR --port PORT [--address ADDR] [--daemon] [--status-fd FD]\n"
    "                        [--tls --tls-cert FILE --tls-key FILE [--tls-cacert FILE]]\n\n"
    "Receives the pages of one `cryo dump --page-server --address ADDR --port PORT` into DIR/pages.img,\n"
    "then exits (0 once the file is whole and synced; 1 if the stream broke off or was refused, leaving\n"
    "nothing). The dump keeps its other image files: copy them next to pages.img (or pages.img next to\n"
    "them) to restore. --port 0 picks a free port and prints it. --daemon returns once listening;\n"
    "--status-fd FD gets one zero byte then. With --tls both sides present certificates signed by the\n"
    "CA of --tls-cacert (the system's by default).\n";

int cmd_page_server(const GlobalOptions&, const std::vector<std::string>& argv) {
  std::string error;
  auto args = parse_page_command("page-server", argv, &error);
  if (!args) return fail(error);
  pageserver::ServerOptions options;
  options.endpoint = page_endpoint(*args, false, &error);
  if (!error.empty()) return fail("page-server: " + error);
  options.images_dir = args->get_or("images-dir", ".");
  ::mkdir(options.images_dir.c_str(), 0700);
  if (auto e = setup_logging(*args); !e.empty()) return fail("page-server: " + e);
  bool daemon = args->has("daemon");
  bool print_port = options.endpoint.port == 0;
  auto st = pageserver::run_page_server(options, [&](int port) {
    if (print_port) {
      printf("%d\n", port);
      fflush(stdout);
    }
    if (daemon) {
      pid_t child = ::fork();
      if (child > 0) _exit(0);  // the listening socket goes on in the child
      ::setsid();
    }
    report_ready(*args);
  });
  if (!st.ok()) return fail("page-server: " + st.error().message());
  return 0;
}

}  // namespace cryo::cli
