#include "oci/image/skopeo.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <vector>

#include "core/sys/io.h"

extern char** environ;

namespace cryo::oci::image {
namespace {

std::string last_lines(const std::string& text) {
  std::string t = text;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t.size() > 600 ? "..." + t.substr(t.size() - 600) : t;
}

}  // namespace

Status skopeo_copy(const std::string& from, const std::string& to, std::optional<bool> src_tls_verify,
                   std::optional<bool> dest_tls_verify) {
  std::vector<std::string> words = {"skopeo", "copy", "--quiet"};
  if (src_tls_verify) words.push_back(std::string("--src-tls-verify=") + (*src_tls_verify ? "true" : "false"));
  if (dest_tls_verify) words.push_back(std::string("--dest-tls-verify=") + (*dest_tls_verify ? "true" : "false"));
  words.push_back(from);
  words.push_back(to);
  std::vector<char*> argv;
  for (auto& w : words) argv.push_back(w.data());
  argv.push_back(nullptr);

  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) < 0) return errno_error("pipe");
  UniqueFd read_end(pipe_fds[0]), write_end(pipe_fds[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, write_end.get(), 2);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, "skopeo", &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Error(rc, "running skopeo (apt-get install skopeo)");
  write_end = UniqueFd();
  auto output = read_fd(read_end.get());
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
  return Error(EIO, "skopeo copy " + from + " " + to + " failed: " + (output.ok() ? last_lines(*output) : ""));
}

}  // namespace cryo::oci::image
