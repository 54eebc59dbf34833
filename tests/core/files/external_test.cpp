#include "core/files/external.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

using namespace cryo;
using namespace cryo::files;

TEST_CASE("--inherit-fd arguments, in CRIU's spelling") {
  auto a = parse_inherit_fd("fd[7]:pipe:[20175]");
  REQUIRE(a.ok());
  CHECK(a->fd == 7);
  CHECK(a->key == "pipe:[20175]");
  CHECK_FALSE(a->debug);
  auto d = parse_inherit_fd("debug[2]:restored here");
  REQUIRE(d.ok());
  CHECK(d->debug);
  CHECK(d->key == "restored here");
  for (const char* bad : {"fd[]:x", "fd[3]", "fd[3]:", "fd[-1]:x", "fd[x]:y", "fd3:x", "file[3]:x", "fd[12345678901]:x"})
    CHECK_MESSAGE(!parse_inherit_fd(bad).ok(), bad);
  CHECK(parse_inherit_fd("fd[3]x").error().message().find("fd[3]x") != std::string::npos);
}

TEST_CASE("keys") {
  CHECK(pipe_key(20175) == "pipe:[20175]");
  CHECK(tty_key(0x8800, 0xd) == "tty[8800:d]");
}

TEST_CASE("matching keys against an image") {
  image::Files files;
  auto* pipe = files.add_pipes();
  pipe->set_id(1);
  pipe->set_inode(4242);
  for (uint32_t id : {1u, 2u}) {  // both ends of one pipe
    auto* f = files.add_files();
    f->set_id(id);
    f->set_kind(image::FileDesc::PIPE);
    f->set_pipe_id(1);
    f->set_flags(id == 1 ? O_RDONLY : O_WRONLY);
  }
  auto* log = files.add_files();
  log->set_id(3);
  log->set_kind(image::FileDesc::REGULAR);
  log->set_path("/tmp/log");
  auto* dir = files.add_files();
  dir->set_id(4);
  dir->set_kind(image::FileDesc::DIRECTORY);
  dir->set_path("/srv");
  CHECK(inherit_key(files.files(0), files) == "pipe:[4242]");
  CHECK(inherit_key(*log, files) == "tmp/log");

  int ends[2];
  REQUIRE(::pipe(ends) == 0);
  int null = ::open("/dev/null", O_RDONLY);
  REQUIRE(null >= 0);
  auto m = match_inherit_fds(files, {{ends[0], "pipe:[4242]"}, {null, "tmp/log"}});
  REQUIRE(m.ok());
  CHECK(m->size() == 3);
  CHECK(m->at(1) == ends[0]);
  CHECK(m->at(2) == ends[0]);
  CHECK(m->at(3) == null);
  CHECK(match_inherit_fds(files, {{null, "/tmp/log"}}).ok());  // with its slash too

  auto nothing = match_inherit_fds(files, {{null, "pipe:[1]"}});
  REQUIRE_FALSE(nothing.ok());
  CHECK(nothing.error().message().find("pipe:[1]") != std::string::npos);
  CHECK(nothing.error().message().find("names nothing") != std::string::npos);
  auto not_pipe = match_inherit_fds(files, {{null, "pipe:[4242]"}});
  REQUIRE_FALSE(not_pipe.ok());
  CHECK(not_pipe.error().message().find("not one") != std::string::npos);
  auto directory = match_inherit_fds(files, {{null, "srv"}});
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message().find("directory") != std::string::npos);
  CHECK_FALSE(match_inherit_fds(files, {{null, "file[12:345]"}}).ok());
  auto tty = match_inherit_fds(files, {{null, "tty[8800:d]"}});
  REQUIRE_FALSE(tty.ok());
  CHECK(tty.error().message().find("tty[8800:d] names no terminal") != std::string::npos);
  CHECK_FALSE(match_inherit_fds(files, {{null, "tmp/log"}, {null, "/tmp/log"}}).ok());  // named twice
  CHECK_FALSE(match_inherit_fds(files, {{9999, "tmp/log"}}).ok());                       // not open
  ::close(ends[0]);
  ::close(ends[1]);
  ::close(null);
}
