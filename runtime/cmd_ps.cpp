#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <set>
#include <sstream>

#include "core/sys/io.h"
#include "oci/container.h"
#include "oci/runtime_log.h"
#include "runtime/args.h"
#include "runtime/command.h"

namespace cryo::cli {
namespace {

// Runs `ps ARGS` and keeps the header and the lines whose PID column is one of pids.
int print_ps_table(const std::vector<std::string>& ps_args, const std::vector<pid_t>& pids) {
  int fds[2];
  if (::pipe(fds) < 0) return oci::report_error("ps: pipe failed");
  pid_t child = ::fork();
  if (child == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv{const_cast<char*>("ps")};
    for (auto& a : ps_args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp("ps", argv.data());
    _exit(127);
  }
  ::close(fds[1]);
  auto text = read_fd(fds[0]);
  ::close(fds[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (!text.ok() || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return oci::report_error("ps: running ps failed");
  std::istringstream in(*text);
  std::string header;
  std::getline(in, header);
  int pid_column = -1, column = 0;
  std::istringstream h(header);
  for (std::string word; h >> word; column++)
    if (word == "PID") pid_column = column;
  if (pid_column < 0) return oci::report_error("ps: no PID column in ps output");
  printf("%s\n", header.c_str());
  std::set<pid_t> wanted(pids.begin(), pids.end());
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    std::string word;
    for (int i = 0; i <= pid_column && (l >> word); i++) {
    }
    if (!word.empty() && wanted.count(static_cast<pid_t>(std::atol(word.c_str())))) printf("%s\n", line.c_str());
  }
  return 0;
}

}  // namespace

int cmd_ps(const GlobalOptions& g, const std::vector<std::string>& argv) {
  static const std::vector<OptionSpec> kSpecs = {{{"-f", "--format"}, true}};
  std::string error;
  auto args = parse(kSpecs, argv, &error, true);
  if (!args) return oci::report_error("ps: " + error);
  if (auto s = oci::setup_runtime_log(g.log, g.log_format, g.debug); !s.ok()) return oci::report_error(s.error().message());
  if (args->positional().empty()) return oci::report_error("ps: give a container id");
  const std::string& id = args->positional()[0];
  auto pids = oci::container_pids(g.root, id);
  if (!pids.ok()) return oci::report_error(pids.error().message());
  std::string format = args->get_or("format", "table");
  if (format == "json") {
    std::string out = "[";
    for (size_t i = 0; i < pids->size(); i++) out += (i ? "," : "") + std::to_string((*pids)[i]);
    printf("%s]\n", out.c_str());
    return 0;
  }
  if (format != "table") return oci::report_error("ps: --format must be table or json");
  std::vector<std::string> ps_args(args->positional().begin() + 1, args->positional().end());
  if (ps_args.empty()) ps_args = {"-ef"};
  return print_ps_table(ps_args, *pids);
}

}  // namespace cryo::cli
