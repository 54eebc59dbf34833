#include "core/sys/proc.h"
#include "core/sys/io.h"

#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <doctest/doctest.h>

using namespace cryo;

TEST_CASE("parse_maps reads every kind of line") {
  const char* text =
      "55d0c0a00000-55d0c0a02000 r--p 00000000 fd:01 1234                       /usr/bin/cat\n"
      "7ffc1a2b3000-7ffc1a2d4000 rw-p 00000000 00:00 0                          [stack]\n"
      "7f0000000000-7f0000001000 rw-s 00000000 00:01 77                         /dev/zero (deleted)\n"
      "7f0000001000-7f0000002000 ---p 00000000 00:00 0 \n";
  auto maps = proc::parse_maps(text);
  REQUIRE(maps.ok());
  REQUIRE(maps->size() == 4);
  CHECK((*maps)[0].start == 0x55d0c0a00000);
  CHECK((*maps)[0].path == "/usr/bin/cat");
  CHECK((*maps)[0].dev_major == 0xfd);
  CHECK((*maps)[0].inode == 1234);
  CHECK((*maps)[1].path == "[stack]");
  CHECK((*maps)[1].write);
  CHECK((*maps)[2].shared);
  CHECK((*maps)[2].path == "/dev/zero (deleted)");
  CHECK_FALSE((*maps)[3].read);
  CHECK((*maps)[3].path == "");
}

TEST_CASE("parse_maps refuses garbage") {
  CHECK_FALSE(proc::parse_maps("not a maps line\n").ok());
  CHECK_FALSE(proc::parse_maps("1000-2000 rw 0 0:0 0\n").ok());
}

TEST_CASE("parse_smaps_flags keys VmFlags by start address") {
  const char* text =
      "7ffc1a2b3000-7ffc1a2d4000 rw-p 00000000 00:00 0                          [stack]\n"
      "Size:                132 kB\n"
      "VmFlags: rd wr mr mw me gd ac \n"
      "7f0000000000-7f0000001000 rw-s 00000000 00:01 77   /dev/zero (deleted)\n"
      "VmFlags: rd wr sh mr mw me ms sd\n";
  auto flags = proc::parse_smaps_flags(text);
  REQUIRE(flags.ok());
  CHECK(flags->at(0x7ffc1a2b3000).size() == 7);
  CHECK(flags->at(0x7ffc1a2b3000)[5] == "gd");
  CHECK(flags->at(0x7f0000000000)[2] == "sh");
}

TEST_CASE("parse_smaps_resident adds Rss and Swap of every mapping") {
  const char* text =
      "7ffc1a2b3000-7ffc1a2d4000 rw-p 00000000 00:00 0                          [stack]\n"
      "Size:                132 kB\nRss:                  12 kB\nPss:   12 kB\nSwap:                  4 kB\n"
      "VmFlags: rd wr mr mw me gd ac \n"
      "7f0000000000-7f1000000000 ---p 00000000 00:00 0\n"
      "Size:          67108864 kB\nRss:                   0 kB\nSwap:                  0 kB\n";
  auto resident = proc::parse_smaps_resident(text);
  REQUIRE(resident.ok());
  CHECK(resident->at(0x7ffc1a2b3000) == 16);
  CHECK(resident->at(0x7f0000000000) == 0);
  CHECK_FALSE(proc::parse_smaps_resident("7f0000000000-7f1000000000 ---p 00000000 00:00 0\nRss: x kB\n").ok());
}

TEST_CASE("parse_smaps adds Shared_Clean and Shared_Dirty apart from the resident size") {
  const char* text =
      "7f0000000000-7f0004000000 rw-p 00000000 00:00 0\n"
      "Size:              65536 kB\nRss:               65536 kB\nPss:               32768 kB\n"
      "Shared_Clean:          8 kB\nShared_Dirty:      65520 kB\nPrivate_Clean:         0 kB\n"
      "Private_Dirty:         8 kB\nSwap:                  0 kB\n"
      "7f1000000000-7f1000001000 rw-p 00000000 00:00 0\n"
      "Rss:                   4 kB\nShared_Clean:          0 kB\nShared_Dirty:          0 kB\n";
  auto smaps = proc::parse_smaps(text);
  REQUIRE(smaps.ok());
  CHECK(smaps->at(0x7f0000000000).resident_kb == 65536);
  CHECK(smaps->at(0x7f0000000000).shared_kb == 65528);
  CHECK(smaps->at(0x7f1000000000).resident_kb == 4);
  CHECK(smaps->at(0x7f1000000000).shared_kb == 0);
}

TEST_CASE("parse_stat handles a comm with spaces and parentheses") {
  std::string text =
      "1234 (my (odd) name) S 1 1234 1234 34816 1234 4194560 100 0 0 0 1 2 0 0 20 0 3 0 100 1000 200 "
      "18446744073709551615 4194304 4195000 140736 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 6291456 6291500 "
      "6300000 140737 140750 140750 140800 256\n";
  auto st = proc::parse_stat(text);
  REQUIRE(st.ok());
  CHECK(st->pid == 1234);
  CHECK(st->sid == 1234);
  CHECK(st->comm == "my (odd) name");
  CHECK(st->state == 'S');
  CHECK(st->ppid == 1);
  CHECK(st->pgid == 1234);
  CHECK(st->tty_nr == 34816);  // /dev/pts/0 (136:0), the controlling terminal
  CHECK(st->tpgid == 1234);
  CHECK(st->num_threads == 3);
  CHECK(st->start_code == 4194304);
  CHECK(st->start_brk == 6300000);
  CHECK(st->env_end == 140800);
  CHECK(st->exit_code == 256);
}

TEST_CASE("parse_stat of this process agrees with getpid") {
  auto st = proc::read_stat(getpid());
  REQUIRE(st.ok());
  CHECK(st->pid == getpid());
  CHECK(st->ppid == getppid());
  CHECK(st->state == 'R');
}

TEST_CASE("parse_status reads ids, capabilities and umask") {
  const char* text =
      "Name:\tbash\nUmask:\t0027\nState:\tS (sleeping)\nUid:\t1000\t1001\t1002\t1003\n"
      "Gid:\t100\t101\t102\t103\nGroups:\t4 24 27 \nNSpid:\t4321\t1\n"
      "CapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n"
      "CapBnd:\t000001ffffffffff\nCapAmb:\t0000000000000000\nNoNewPrivs:\t1\nSeccomp:\t2\n"
      "SigIgn:\t0000000000001000\nSigCgt:\t0000000180004002\n";
  auto st = proc::parse_status(text);
  REQUIRE(st.ok());
  CHECK(st->umask == 027);
  CHECK(st->uids[1] == 1001);
  CHECK(st->gids[3] == 103);
  CHECK(st->groups == std::vector<uint32_t>{4, 24, 27});
  CHECK(st->nspid == std::vector<pid_t>{4321, 1});
  CHECK(st->cap_prm == 0x1ffffffffffULL);
  CHECK(st->no_new_privs == 1);
  CHECK(st->seccomp == 2);
  CHECK(st->sig_ignored == 0x1000);
  CHECK(st->sig_caught == 0x180004002ULL);
}

TEST_CASE("parse_limits matches getrlimit for this process") {
  auto text = read_file("/proc/self/limits");
  REQUIRE(text.ok());
  auto limits = proc::parse_limits(*text);
  REQUIRE(limits.ok());
  for (int r = 0; r < RLIMIT_NLIMITS; r++) {
    struct rlimit rl;
    REQUIRE(getrlimit(r, &rl) == 0);
    CHECK((*limits)[static_cast<size_t>(r)].soft == rl.rlim_cur);
    CHECK((*limits)[static_cast<size_t>(r)].hard == rl.rlim_max);
  }
}

TEST_CASE("parse_limits refuses a file missing a limit") {
  CHECK_FALSE(proc::parse_limits("Limit  Soft Limit  Hard Limit  Units\n").ok());
}

TEST_CASE("parse_fdinfo reads pos, flags in octal and other fields") {
  auto info = proc::parse_fdinfo("pos:\t42\nflags:\t0102002\nmnt_id:\t25\nino:\t991\neventfd-count:  5\n");
  REQUIRE(info.ok());
  CHECK(info->pos == 42);
  CHECK(info->flags == 0102002);
  CHECK(info->mnt_id == 25);
  CHECK(info->ino == 991);
  CHECK(info->fields.at("eventfd-count") == "5");
}

TEST_CASE("eventfd, signalfd and timerfd fdinfo as Linux 6.x prints it") {
  auto ev = proc::parse_fdinfo("pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\n"
                               "eventfd-count:               1a\neventfd-id: 1\neventfd-semaphore: 1\n");
  REQUIRE(ev.ok());
  auto e = proc::parse_eventfd(*ev);
  REQUIRE(e.ok());
  CHECK(e->count == 0x1a);  // hexadecimal
  CHECK(e->semaphore);
  auto old_kernel = proc::parse_fdinfo("pos:\t0\nflags:\t02\neventfd-count:                5\n");
  CHECK(!proc::parse_eventfd(*old_kernel).ok());

  auto sig = proc::parse_fdinfo("pos:\t0\nflags:\t02\nsigmask:\t0000000000004200\n");
  CHECK(*proc::parse_signalfd_mask(*sig) == 0x4200);

  auto tm = proc::parse_fdinfo("pos:\t0\nflags:\t04002\nclockid: 1\nticks: 3\nsettime flags: 03\n"
                               "it_value: (99, 999815852)\nit_interval: (1, 500)\n");
  auto t = proc::parse_timerfd(*tm);
  REQUIRE(t.ok());
  CHECK(t->clockid == 1);
  CHECK(t->ticks == 3);
  CHECK(t->settime_flags == 3);
  CHECK(t->value_ns == 99999815852ULL);
  CHECK(t->interval_ns == 1000000500ULL);
  auto bad = proc::parse_fdinfo("clockid: 1\nticks: 0\nsettime flags: 0\nit_value: (1, 2000000000)\nit_interval: (0, 0)\n");
  CHECK(!proc::parse_timerfd(*bad).ok());
}

TEST_CASE("epoll fdinfo lists each target") {
  auto t = proc::parse_epoll_targets(
      "pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t1038\n"
      "tfd:        3 events: 40000019 data:                3  pos:0 ino:40e sdev:10\n"
      "tfd:      125 events: 80000019 data: ffffffffffffffff  pos:0 ino:158656 sdev:f\n");
  REQUIRE(t.ok());
  REQUIRE(t->size() == 2);
  CHECK((*t)[0].fd == 3);
  CHECK((*t)[0].events == 0x40000019);
  CHECK((*t)[1].fd == 125);
  CHECK((*t)[1].data == ~0ULL);
  CHECK(!proc::parse_epoll_targets("tfd: 3 events: zz data: 1\n").ok());
}

TEST_CASE("inotify fdinfo") {
  auto w = proc::parse_inotify_watches(
      "pos:\t0\nflags:\t00\nmnt_id:\t17\nino:\t1038\n"
      "inotify wd:2 ino:510001 sdev:fe00000 mask:2 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 "
      "f_handle:01005100881f301e\n"
      "inotify wd:1a ino:a781f3 sdev:fe00000 mask:300 ignored_mask:0 fhandle-bytes:8 fhandle-type:1 "
      "f_handle:f381a700eb7472ea\n");
  REQUIRE(w.ok());
  REQUIRE(w->size() == 2);
  CHECK((*w)[0].wd == 2);
  CHECK((*w)[0].ino == 0x510001);
  CHECK((*w)[0].sdev == 0xfe00000);
  CHECK((*w)[1].wd == 0x1a);
  CHECK((*w)[1].mask == 0x300);
  CHECK((*w)[1].handle_type == 1);
  CHECK((*w)[1].handle == std::string("\xf3\x81\xa7\x00\xeb\x74\x72\xea", 8));
  CHECK(!proc::parse_inotify_watches("inotify wd:1 fhandle-bytes:8 fhandle-type:1 f_handle:0102\n").ok());
}

TEST_CASE("/proc/PID/timers") {
  auto timers = proc::parse_posix_timers(
      "ID: 0\nsignal: 34/0000000000000000\nnotify: signal/pid.31712\nClockID: 1\n"
      "ID: 7\nsignal: 32/00007f12345678a0\nnotify: signal/tid.31720\nClockID: 0\n"
      "ID: 9\nsignal: 0/0000000000000009\nnotify: none/pid.31712\nClockID: 2\n");
  REQUIRE(timers.ok());
  REQUIRE(timers->size() == 3);
  CHECK((*timers)[0].signo == 34);
  CHECK((*timers)[0].notify == SIGEV_SIGNAL);
  CHECK((*timers)[1].id == 7);
  CHECK((*timers)[1].value == 0x7f12345678a0ULL);
  CHECK((*timers)[1].notify == (SIGEV_SIGNAL | SIGEV_THREAD_ID));
  CHECK((*timers)[1].target == 31720);
  CHECK((*timers)[2].notify == SIGEV_NONE);
  CHECK((*timers)[2].clockid == 2);
  CHECK(proc::parse_posix_timers("").ok());
  CHECK(!proc::parse_posix_timers("ID: 1\nnotify: bogus/pid.3\n").ok());
  CHECK(!proc::parse_posix_timers("signal: 3/0\n").ok());
}

TEST_CASE("/proc/sysvipc/shm") {
  auto s = proc::parse_sysv_shm(
      "       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime"
      "      ctime                   rss                  swap\n"
      " 305441741         53   600                 10000 22323 22323      1     0     0     0     0 1795779847          0"
      " 1795779847                     0                     0\n"
      "         0         54  1640                  4096 22323 22323      0  1000   100     0     0 1795779847          0"
      " 1795779847                     0                     0\n"
      "-559038737         55   600                  4096     1     1      0     0     0     0     0 0 0 0 0 0\n");
  REQUIRE(s.ok());
  REQUIRE(s->size() == 3);
  CHECK((*s)[0].key == 305441741);
  CHECK((*s)[0].id == 53);
  CHECK((*s)[0].perms == 0600);
  CHECK((*s)[0].size == 10000);
  CHECK((*s)[0].nattch == 1);
  CHECK((*s)[1].perms == 01640);
  CHECK((*s)[1].uid == 1000);
  CHECK((*s)[2].key == -559038737);
  CHECK(!proc::parse_sysv_shm("header\n1 2\n").ok());
}

TEST_CASE("parse_pid_list") {
  CHECK(proc::parse_pid_list("12 13 140 ") == std::vector<pid_t>{12, 13, 140});
  CHECK(proc::parse_pid_list("").empty());
}
