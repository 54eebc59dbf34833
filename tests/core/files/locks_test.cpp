#include "core/files/locks.h"

#include <doctest/doctest.h>

using namespace cryo;

TEST_CASE("parse_locks reads held locks and skips waiting requests") {
  const char* text =
      "1: POSIX  ADVISORY  WRITE 2716 fe:00:10953040 0 EOF\n"
      "1: -> POSIX  ADVISORY  WRITE 2800 fe:00:10953040 0 EOF\n"
      "2: FLOCK  ADVISORY  READ 2716 00:1f:77 0 EOF\n"
      "3: OFDLCK ADVISORY  WRITE -1 00:05:3 100 199\n";
  auto locks = files::parse_locks(text);
  REQUIRE(locks.ok());
  REQUIRE(locks->size() == 3);
  CHECK((*locks)[0].kind == "POSIX");
  CHECK((*locks)[0].write);
  CHECK((*locks)[0].pid == 2716);
  CHECK((*locks)[0].dev_major == 0xfe);
  CHECK((*locks)[0].inode == 10953040);
  CHECK((*locks)[0].length == 0);
  CHECK((*locks)[1].kind == "FLOCK");
  CHECK_FALSE((*locks)[1].write);
  CHECK((*locks)[1].dev_minor == 0x1f);
  CHECK((*locks)[2].pid == -1);
  CHECK((*locks)[2].start == 100);
  CHECK((*locks)[2].length == 100);
}

TEST_CASE("parse_locks refuses a line it cannot read") {
  CHECK_FALSE(files::parse_locks("1: POSIX ADVISORY\n").ok());
  CHECK_FALSE(files::parse_locks("1: POSIX ADVISORY WRITE x fe:00:1 0 EOF\n").ok());
}

TEST_CASE("parse_locks keeps a lease's state and mode") {
  auto locks = files::parse_locks(
      "1: LEASE  ACTIVE    WRITE 29967 fe:00:10952810 0 EOF\n"
      "2: LEASE  BREAKING  UNLCK 29967 fe:00:10952754 0 EOF\n");
  REQUIRE(locks.ok());
  REQUIRE(locks->size() == 2);
  CHECK((*locks)[0].state == "ACTIVE");
  CHECK((*locks)[0].write);
  CHECK((*locks)[1].state == "BREAKING");
  CHECK((*locks)[1].mode == "UNLCK");
}

TEST_CASE("lock_call takes OFD locks and leases again with fcntl") {
  image::FileLock ofd;
  ofd.set_kind(image::FileLock::OFD);
  ofd.set_write(true);
  ofd.set_start(2);
  ofd.set_length(5);
  ofd.set_fd(42);
  auto c = files::lock_call(ofd);
  CHECK(c.arg == F_OFD_SETLK);
  CHECK(c.needs_flock_struct);
  CHECK(c.fl.l_type == F_WRLCK);
  CHECK(c.fl.l_start == 2);
  CHECK(c.fl.l_len == 5);
  CHECK(c.fl.l_pid == 0);  // F_OFD_SETLK refuses any other
  image::FileLock lease;
  lease.set_kind(image::FileLock::LEASE);
  lease.set_fd(40);
  c = files::lock_call(lease);
  CHECK(c.arg == F_SETLEASE);
  CHECK_FALSE(c.needs_flock_struct);
  CHECK(c.third == F_RDLCK);
  CHECK(c.fd == 40);
}
