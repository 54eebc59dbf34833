#include "core/files/fd_zone.h"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

using namespace cryo;

namespace {

image::Process with_fds(std::initializer_list<int> fds) {
  image::Process p;
  p.set_pid(42);
  for (int fd : fds) p.add_fds()->set_fd(fd);
  return p;
}

}  // namespace

TEST_CASE("fd_zone: above the highest fd where the limit leaves room") {
  auto a = with_fds({0, 1, 2, 7}), b = with_fds({0, 30});
  auto zone = files::fd_zone({&a, nullptr, &b}, 1024, 100);
  REQUIRE(zone.ok());
  CHECK(zone->begin == 39);
  CHECK(zone->end == INT_MAX);
  auto none = files::fd_zone({}, 1024, 100);
  REQUIRE(none.ok());
  CHECK(none->begin == 11);
}

TEST_CASE("fd_zone: the widest gap when the fds sit at the top of the limit") {
  auto valgrind = with_fds({0, 1, 2, 19988, 19990, 19994});
  auto zone = files::fd_zone({&valgrind}, 20000, 100);
  REQUIRE(zone.ok());
  CHECK(zone->begin == 3);
  CHECK(zone->end == 19988);
  CHECK_FALSE(19988 < zone->end);  // valgrind's first fd lies above it
  CHECK(3 >= zone->begin);

  // Wider above the last fd than anywhere below: that gap, with no end.
  auto high = with_fds({0, 1, 2, 5, 900});
  zone = files::fd_zone({&high}, 1024, 200);
  REQUIRE(zone.ok());
  CHECK(zone->begin == 6);
  CHECK(zone->end == 900);
  zone = files::fd_zone({&high}, 2000, 1200);
  REQUIRE(zone.ok());
  CHECK(zone->begin == 901);
  CHECK(zone->end == INT_MAX);
}

TEST_CASE("fd_zone refuses an fd the limit does not allow") {
  auto p = with_fds({0, 5000});
  auto zone = files::fd_zone({&p}, 1024, 10);
  REQUIRE_FALSE(zone.ok());
  CHECK(zone.error().message().find("pid 42 fd 5000") != std::string::npos);
}

TEST_CASE("FdZone::copy takes the lowest free number of the zone, and no other") {
  int high = 900;
  REQUIRE(::dup2(0, high) == high);
  files::FdZone zone{high, high + 2};
  auto first = zone.copy(0);
  REQUIRE(first.ok());
  CHECK(first->get() == high + 1);
  CHECK((::fcntl(first->get(), F_GETFD) & FD_CLOEXEC) != 0);
  auto second = zone.copy(0);
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().message().find("between 900 and 902") != std::string::npos);
  ::close(high);
}
