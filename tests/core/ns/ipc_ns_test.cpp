// validate_ipc_ns: what an image's IPC namespace may ask the restore to make.
#include <doctest/doctest.h>

#include "core/image/proto/files.pb.h"
#include "core/image/proto/ipc.pb.h"
#include "core/ns/ipc_ns.h"

using namespace cryo;

namespace {

image::IpcNamespace sane() {
  image::IpcNamespace ipc;
  auto* sysctl = ipc.add_sysctls();
  sysctl->set_name("kernel/sem");
  sysctl->set_value("32000\t1024000000\t500\t32000");
  auto* shm = ipc.add_shms();
  shm->set_id(4242);
  shm->set_size(12388);
  auto* sem = ipc.add_sems();
  sem->set_id(777);
  sem->add_values(0);
  sem->add_values(32000);
  auto* msg = ipc.add_msg_queues();
  msg->set_id(99);
  auto* m = msg->add_messages();
  m->set_type(5);
  m->set_text("alpha");
  auto* mq = ipc.add_mqueues();
  mq->set_name("queue");
  mq->set_maxmsg(8);
  mq->set_msgsize(128);
  auto* pm = mq->add_messages();
  pm->set_priority(10);
  pm->set_text("high");
  return ipc;
}

bool refused(const image::IpcNamespace& ipc, const image::Files& files = {}) {
  return !ns::validate_ipc_ns(ipc, files).ok();
}

}  // namespace

TEST_CASE("an IPC namespace as a dump writes it is accepted") {
  CHECK(ns::validate_ipc_ns(sane(), {}).ok());
  CHECK(ns::validate_ipc_ns(image::IpcNamespace(), {}).ok());
}

TEST_CASE("only the namespace's own sysctls, with numbers for values") {
  for (const char* name : {"kernel/core_pattern", "kernel/../kernel/shmmax", "../../etc/passwd", "fs/mqueue/../../x", ""}) {
    auto ipc = sane();
    ipc.mutable_sysctls(0)->set_name(name);
    CHECK_MESSAGE(refused(ipc), name);
  }
  for (const std::string& value : {std::string(), std::string("1\n2"), std::string("|/bin/sh"), std::string(65, '1')}) {
    auto ipc = sane();
    ipc.mutable_sysctls(0)->set_value(value);
    CHECK_MESSAGE(refused(ipc), value);
  }
}

TEST_CASE("objects with impossible ids, sizes or contents are refused") {
  auto ipc = sane();
  ipc.mutable_shms(0)->set_id(-1);
  CHECK(refused(ipc));
  ipc = sane();
  *ipc.add_shms() = ipc.shms(0);  // the same id twice
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_shms(0)->set_size(0);
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_sems(0)->clear_values();
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_sems(0)->set_values(0, 40000);
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_sems(0)->add_pids(5);  // a last process for one of its two semaphores only
  CHECK(refused(ipc));
  ipc.mutable_sems(0)->add_pids(0);
  CHECK(!refused(ipc));
  ipc = sane();
  ipc.mutable_msg_queues(0)->mutable_messages(0)->set_type(0);
  CHECK(refused(ipc));
}

TEST_CASE("POSIX queues need a plain name and room for their messages") {
  for (const char* name : {"", ".", "..", "a/b", "../etc"}) {
    auto ipc = sane();
    ipc.mutable_mqueues(0)->set_name(name);
    CHECK_MESSAGE(refused(ipc), name);
  }
  auto ipc = sane();
  *ipc.add_mqueues() = ipc.mqueues(0);  // the same name twice
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_mqueues(0)->set_maxmsg(0);
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_mqueues(0)->mutable_messages(0)->set_text(std::string(129, 'x'));
  CHECK(refused(ipc));
  ipc = sane();
  ipc.mutable_mqueues(0)->mutable_messages(0)->set_priority(32768);
  CHECK(refused(ipc));
}

TEST_CASE("segments of cryo's own namespace cannot come with a namespace of the tree's") {
  image::Files files;
  files.add_sysv_shms()->set_id(1);
  CHECK(refused(sane(), files));
}
