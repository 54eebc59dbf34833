// A real image of a real process, corrupted byte by byte and truncated: every
// damaged copy must be refused by the loader that restore and inspect use.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "core/checkpoint.h"
#include "core/guard/guard.h"
#include "core/image_load.h"
#include "core/sys/io.h"

using namespace cryo;
namespace fs = std::filesystem;

namespace {

struct Child {
  pid_t pid = -1;
  Child() {
    pid = fork();
    if (pid == 0) {
      setsid();
      int null = open("/dev/null", O_RDWR);
      for (int fd = 0; fd < 3; fd++) dup2(null, fd);
      close_range(3, ~0U, 0);
      std::vector<char> heap(1 << 20, 'x');  // some private pages
      for (;;) pause();
    }
  }
  ~Child() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

std::string slurp(const fs::path& p) {
  auto r = read_file(p.string());
  REQUIRE(r.ok());
  return *r;
}

void spit(const fs::path& p, const std::string& data) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << data;
}

bool loads(const std::string& dir) {
  auto reader = image::ImageDirReader::open(dir);
  if (!reader.ok()) return false;
  return load_image(*reader).ok();
}

}  // namespace

TEST_CASE("a real image loads, and no corruption of it does") {
  if (geteuid() != 0) {
    MESSAGE("skipped: dumping a process needs root");
    return;
  }
  set_guard_binary(CRYO_BINARY);  // a dump -R starts cryo's guard: this binary has no such command
  Child child;
  usleep(100000);
  char tmpl[] = "/tmp/cryo-corrupt-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  DumpOptions options;
  options.pid = child.pid;
  options.images_dir = dir;
  options.leave_running = true;
  auto dumped = checkpoint(options);
  REQUIRE_MESSAGE(dumped.ok(), (dumped.ok() ? "" : dumped.error().message()));
  REQUIRE(loads(dir));

  for (const auto& entry : fs::directory_iterator(dir)) {
    std::string name = entry.path().filename();
    if (name == "stats-dump.json") continue;
    std::string original = slurp(entry.path());
    REQUIRE(!original.empty());
    // Every byte of small files; a spread of bytes of large ones.
    size_t stride = std::max<size_t>(1, original.size() / 1500);
    size_t refused = 0, tried = 0;
    for (size_t i = 0; i < original.size(); i += stride) {
      std::string bad = original;
      bad[i] = static_cast<char>(bad[i] ^ 0x5a);
      spit(entry.path(), bad);
      tried++;
      if (!loads(dir)) refused++;
      else FAIL_CHECK(name << ": flipping byte " << i << " went unnoticed");
    }
    for (size_t len : {size_t{0}, original.size() / 2, original.size() - 1}) {
      spit(entry.path(), original.substr(0, len));
      CHECK_MESSAGE(!loads(dir), name << " truncated to " << len << " bytes was accepted");
    }
    spit(entry.path(), original);
    CHECK(refused == tried);
  }
  REQUIRE(loads(dir));
  fs::remove_all(dir);
}
