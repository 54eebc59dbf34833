// Hostile images: a real image whose messages are changed field by field and
// written back with valid checksums (as an attacker would) must load or be
// refused with an error, never crash or hang the loader restore relies on.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <google/protobuf/message.h>
#include <google/protobuf/reflection.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <cstring>
#include <random>

#include "core/checkpoint.h"
#include "core/guard/guard.h"
#include "core/image/image.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"
#include "core/image_load.h"
#include "core/sys/io.h"

using namespace cryo;
namespace fs = std::filesystem;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;

namespace {

// Changes one field somewhere in the message tree to a surprising value.
void mutate(Message* m, std::mt19937_64& rng, int depth = 0) {
  const auto* d = m->GetDescriptor();
  const auto* r = m->GetReflection();
  if (d->field_count() == 0) return;
  const FieldDescriptor* f = d->field(static_cast<int>(rng() % static_cast<uint64_t>(d->field_count())));
  static const uint64_t kValues[] = {0, 1, 2, 0xffffffffull, 0x7fffffffull, 0xffffffffffffffffull, 4096, 4095,
                                     0x7ffffffff000ull, 0x10000ull, 1ull << 40};
  uint64_t v = kValues[rng() % (sizeof kValues / sizeof kValues[0])];
  if (f->is_repeated()) {
    int n = r->FieldSize(*m, f);
    if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (n > 0 && depth < 4) mutate(r->MutableRepeatedMessage(m, f, static_cast<int>(rng() % static_cast<uint64_t>(n))), rng, depth + 1);
      else if (rng() % 2) r->AddMessage(m, f);
      return;
    }
    if (n > 0 && rng() % 3 == 0) {
      r->RemoveLast(m, f);
      return;
    }
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32: r->AddInt32(m, f, static_cast<int32_t>(v)); break;
      case FieldDescriptor::CPPTYPE_UINT32: r->AddUInt32(m, f, static_cast<uint32_t>(v)); break;
      case FieldDescriptor::CPPTYPE_UINT64: r->AddUInt64(m, f, v); break;
      case FieldDescriptor::CPPTYPE_STRING: r->AddString(m, f, std::string(v % 300, 'x')); break;
      default: break;
    }
    return;
  }
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_MESSAGE:
      if (depth < 4) mutate(r->MutableMessage(m, f), rng, depth + 1);
      break;
    case FieldDescriptor::CPPTYPE_INT32: r->SetInt32(m, f, static_cast<int32_t>(v)); break;
    case FieldDescriptor::CPPTYPE_UINT32: r->SetUInt32(m, f, static_cast<uint32_t>(v)); break;
    case FieldDescriptor::CPPTYPE_INT64: r->SetInt64(m, f, static_cast<int64_t>(v)); break;
    case FieldDescriptor::CPPTYPE_UINT64: r->SetUInt64(m, f, v); break;
    case FieldDescriptor::CPPTYPE_BOOL: r->SetBool(m, f, !r->GetBool(*m, f)); break;
    case FieldDescriptor::CPPTYPE_ENUM: r->SetEnumValue(m, f, static_cast<int>(v % 9)); break;
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string s = r->GetString(*m, f);
      r->SetString(m, f, rng() % 2 ? s.substr(0, s.size() / 2) : s + std::string(v % 5000, '\x01'));
      break;
    }
    default: break;
  }
}

// The kinds of state whose image messages the mutations should reach: an
// epoll watching an eventfd, a timerfd, a signalfd, a sealed memfd mapped
// shared, a removed System V segment, a POSIX timer and a seccomp filter.
void make_objects() {
  int ev = eventfd(3, EFD_SEMAPHORE);
  int ep = epoll_create1(0);
  struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data = {.u64 = 7}};
  epoll_ctl(ep, EPOLL_CTL_ADD, ev, &e);
  int tfd = timerfd_create(CLOCK_MONOTONIC, 0);
  struct itimerspec its = {{1, 0}, {100, 0}};
  timerfd_settime(tfd, 0, &its, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, nullptr);
  signalfd(-1, &set, 0);
  int mfd = memfd_create("hostile", MFD_ALLOW_SEALING);
  if (ftruncate(mfd, 8192) == 0) {
    void* map = mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (map != MAP_FAILED) std::memset(map, 'm', 4096);
    fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK);
  }
  int shm = shmget(IPC_PRIVATE, 4096, IPC_CREAT | 0600);
  if (shm >= 0) {
    void* at = shmat(shm, nullptr, 0);
    if (at != reinterpret_cast<void*>(-1)) std::memset(at, 's', 4096);
    shmctl(shm, IPC_RMID, nullptr);
  }
  struct sigevent sev{};
  sev.sigev_notify = SIGEV_SIGNAL;
  sev.sigev_signo = SIGUSR2;
  timer_t timer;
  if (timer_create(CLOCK_MONOTONIC, &sev, &timer) == 0) timer_settime(timer, 0, &its, nullptr);
  struct sock_filter allow[] = {BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)};
  struct sock_fprog prog = {1, allow};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
}

template <typename T>
void rewrite(const std::string& path, image::Kind kind, const T& message) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << image::encode(kind, {&message});
}

}  // namespace

TEST_CASE("hostile but well-formed images are refused or loaded, never crash") {
  if (geteuid() != 0) {
    MESSAGE("skipped: dumping a process needs root");
    return;
  }
  pid_t child = fork();
  if (child == 0) {
    setsid();
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; fd++) dup2(null, fd);
    close_range(3, ~0U, 0);
    make_objects();
    for (;;) pause();
  }
  usleep(100000);
  set_guard_binary(CRYO_BINARY);  // a dump -R starts cryo's guard: this binary has no such command
  char tmpl[] = "/tmp/cryo-hostile-XXXXXX";
  REQUIRE(mkdtemp(tmpl));
  std::string dir = tmpl;
  DumpOptions options;
  options.pid = child;
  options.images_dir = dir;
  options.leave_running = true;
  auto dumped = checkpoint(options);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  REQUIRE(dumped.ok());

  std::string core = dir + "/" + image::core_name(child), mm = dir + "/" + image::mm_name(child);
  std::string tree_path = dir + "/tree.img", files_path = dir + "/files.img";
  image::Process core_msg;
  image::Mm mm_msg;
  image::Tree tree_msg;
  image::Files files_msg;
  REQUIRE(image::decode_one(image::Kind::kCore, *read_file(core), &core_msg).ok());
  REQUIRE(image::decode_one(image::Kind::kMm, *read_file(mm), &mm_msg).ok());
  REQUIRE(image::decode_one(image::Kind::kTree, *read_file(tree_path), &tree_msg).ok());
  REQUIRE(image::decode_one(image::Kind::kFiles, *read_file(files_path), &files_msg).ok());
  std::string sizes_ok = *read_file(dir + "/inventory.img");
  // Writes the four message files back, and an inventory that names their
  // sizes truthfully, as an attacker who knows the format would.
  auto write_image = [&](const image::Process& c, const image::Mm& m, const image::Tree& t, const image::Files& f) {
    rewrite(core, image::Kind::kCore, c);
    rewrite(mm, image::Kind::kMm, m);
    rewrite(tree_path, image::Kind::kTree, t);
    rewrite(files_path, image::Kind::kFiles, f);
    image::Inventory inv;
    REQUIRE(image::decode_one(image::Kind::kInventory, sizes_ok, &inv).ok());
    for (auto& file : *inv.mutable_files()) file.set_size(fs::file_size(dir + "/" + file.name()));
    rewrite(dir + "/inventory.img", image::Kind::kInventory, inv);
  };

  std::mt19937_64 rng(42);
  int refused = 0, loaded = 0;
  for (int round = 0; round < 400; round++) {
    image::Process c = core_msg;
    image::Mm m = mm_msg;
    image::Tree t = tree_msg;
    image::Files f = files_msg;
    switch (round % 4) {
      case 0: mutate(&c, rng); break;
      case 1: mutate(&m, rng); break;
      case 2: mutate(&t, rng); break;
      default: mutate(&f, rng); break;
    }
    write_image(c, m, t, f);
    auto reader = image::ImageDirReader::open(dir);
    if (!reader.ok()) {
      refused++;
      continue;
    }
    if (load_image(*reader).ok()) loaded++;
    else refused++;
  }
  MESSAGE("refused " << refused << ", loaded " << loaded);
  CHECK(refused > 0);

  // A page count that wraps back to the run's true size when made bytes.
  REQUIRE(mm_msg.pages_size() > 0);
  image::Mm wrapped = mm_msg;
  auto* run = wrapped.mutable_pages(0);
  run->set_npages(run->npages() + (1ULL << 52));
  write_image(core_msg, wrapped, tree_msg, files_msg);
  auto reader = image::ImageDirReader::open(dir);
  REQUIRE(reader.ok());
  CHECK_FALSE(load_image(*reader).ok());

  // A run in a page file the image does not have.
  image::Mm elsewhere = mm_msg;
  elsewhere.mutable_pages(0)->set_file(1);
  write_image(core_msg, elsewhere, tree_msg, files_msg);
  auto elsewhere_reader = image::ImageDirReader::open(dir);
  REQUIRE(elsewhere_reader.ok());
  auto refused_run = load_image(*elsewhere_reader);
  REQUIRE_FALSE(refused_run.ok());
  CHECK(refused_run.error().message().find("page file 1, and the image has 1") != std::string::npos);

  // More page files than the inventory lists, and several in an image of
  // format version 1 (pages.img alone then).
  write_image(core_msg, mm_msg, tree_msg, files_msg);
  image::Inventory inv;
  REQUIRE(image::decode_one(image::Kind::kInventory, *read_file(dir + "/inventory.img"), &inv).ok());
  CHECK(inv.page_files() == 1);
  image::Inventory more = inv;
  more.set_page_files(2);
  rewrite(dir + "/inventory.img", image::Kind::kInventory, more);
  auto unlisted = image::ImageDirReader::open(dir);
  REQUIRE_FALSE(unlisted.ok());
  CHECK(unlisted.error().message().find("pages-1.img is not among its files") != std::string::npos);
  more.set_format_version(1);
  rewrite(dir + "/inventory.img", image::Kind::kInventory, more);
  auto old_many = image::ImageDirReader::open(dir);
  REQUIRE_FALSE(old_many.ok());
  CHECK(old_many.error().message().find("format version 1 has pages.img alone") != std::string::npos);

  // An image of format version 1 (every file's header says 1, no run names
  // a file, the inventory no page files) still loads.
  inv.clear_page_files();
  inv.set_format_version(1);
  rewrite(dir + "/inventory.img", image::Kind::kInventory, inv);
  std::vector<std::string> names = {image::kInventoryName};
  for (const auto& f : inv.files()) names.push_back(f.name());
  for (const auto& name : names) {
    std::string path = dir + "/" + name;
    std::string bytes = *read_file(path);
    REQUIRE(bytes.size() >= image::kHeaderSize + 8);
    bytes[8] = 1;  // the version, little-endian
    if (name != image::kPagesName) {  // a message file: its trailer is the checksum of the rest
      uint64_t sum = image::checksum(bytes.data(), bytes.size() - 8);
      for (int i = 0; i < 8; i++) bytes[bytes.size() - 8 + static_cast<size_t>(i)] = static_cast<char>(sum >> (8 * i));
    }
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
  }
  auto v1 = image::ImageDirReader::open(dir);
  REQUIRE(v1.ok());
  CHECK(load_image(*v1).ok());
  fs::remove_all(dir);
}
