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
