#include "core/inspect.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <map>

#include "core/files/external.h"
#include "core/image/image.h"
#include "core/image_load.h"
#include "core/mm/parent_images.h"
#include "core/image/proto/files.pb.h"
#include "core/image/proto/mm.pb.h"
#include "core/image/proto/task.pb.h"
#include "core/image/proto/tree.pb.h"

namespace cryo {
namespace {

Result<std::string> to_json(const google::protobuf::Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = false;
  options.preserve_proto_field_names = true;
  auto status = google::protobuf::util::MessageToJsonString(m, &out, options);
  if (!status.ok()) return Error(EINVAL, "json: " + std::string(status.message()));
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      char buf[8];
      snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

std::string addr_text(const image::SockAddr& a) {
  if (a.family() == AF_UNIX) {
    if (a.addr().empty()) return "";
    return a.addr()[0] == '\0' ? "@" + a.addr().substr(1) : a.addr();
  }
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.family() != AF_INET && a.family() != AF_INET6) return "";
  if (a.addr().size() != (a.family() == AF_INET6 ? 16u : 4u)) return "<bad address>";
  inet_ntop(static_cast<int>(a.family()), a.addr().data(), buf, sizeof buf);
  return (a.family() == AF_INET6 ? "[" + std::string(buf) + "]" : std::string(buf)) + ":" + std::to_string(a.port());
}

// Every socket with its owners, addresses and queue sizes, readable.
std::string sockets_json(const LoadedImage& img) {
  std::string out = "[";
  bool first = true;
  for (const auto& f : img.files.files()) {
    if (f.kind() != image::FileDesc::SOCKET) continue;
    const auto& s = f.socket();
    std::string owners;
    for (const auto& [pid, core] : img.cores)
      for (const auto& fd : core.fds())
        if (fd.file_id() == f.id())
          owners += std::string(owners.empty() ? "" : ",") + "{\"pid\":" + std::to_string(pid) +
                    ",\"fd\":" + std::to_string(fd.fd()) + "}";
    const char* family = s.family() == AF_UNIX      ? "unix"
                         : s.family() == AF_NETLINK ? "netlink"
                         : s.family() == AF_PACKET  ? "packet"
                         : s.family() == AF_INET6   ? "inet6"
                                                    : "inet";
    const char* type = s.type() == SOCK_STREAM ? "stream"
                       : s.type() == SOCK_DGRAM ? "dgram"
                       : s.type() == SOCK_RAW   ? "raw"
                                                : "seqpacket";
    std::string proto = s.family() == AF_UNIX                  ? ""
                        : s.family() == AF_NETLINK             ? std::to_string(s.protocol())
                        : s.family() == AF_PACKET              ? std::to_string(ntohs(static_cast<uint16_t>(
                                                                     s.packet().bound_protocol())))
                        : s.type() == SOCK_RAW                 ? std::to_string(s.protocol())
                        : s.type() == SOCK_STREAM              ? "tcp"
                        : s.protocol() == IPPROTO_UDPLITE      ? "udplite"
                        : s.protocol() == IPPROTO_ICMP         ? "icmp"
                        : s.protocol() == IPPROTO_ICMPV6       ? "icmpv6"
                                                               : "udp";
    uint64_t queued = 0;
    for (const auto& d : s.queue()) queued += d.data().size();
    out += std::string(first ? "" : ",") + "{\"id\":" + std::to_string(f.id()) + ",\"owners\":[" + owners +
           "],\"family\":\"" + family + "\",\"type\":\"" + type + "\",\"protocol\":\"" + proto +
           "\",\"state\":\"" + image::Socket::State_Name(s.state()) + "\",\"local\":" +
           json_string(addr_text(s.local())) + ",\"peer\":" + json_string(addr_text(s.peer())) +
           ",\"recv_queue_bytes\":" + std::to_string(s.has_tcp() ? s.tcp().recv_queue().size() : queued) +
           ",\"send_queue_bytes\":" + std::to_string(s.has_tcp() ? s.tcp().send_queue().size() : 0) +
           ",\"queued_messages\":" + std::to_string(s.queue_size()) + "}";
    first = false;
  }
  return out + "]";
}

// What the tree shared with processes outside it, by the key that
// `restore --inherit-fd fd[N]:KEY` names it with: the external pipes and the
// files a shell job inherits from cryo restore.
std::string external_json(const LoadedImage& img) {
  struct Entry {
    std::string kind, owners;
    int32_t outside_holder = 0;
    uint64_t queued = 0;
  };
  std::map<std::string, Entry> by_key;
  for (const auto& f : img.files.files()) {
    const image::Pipe* pipe = nullptr;
    for (const auto& p : img.files.pipes())
      if (f.kind() == image::FileDesc::PIPE && p.id() == f.pipe_id()) pipe = &p;
    if (!(pipe && pipe->outside_holder() != 0) && f.kind() != image::FileDesc::INHERITED) continue;
    std::string key = files::inherit_key(f, img.files);
    if (key.empty()) continue;
    Entry& e = by_key[key];
    e.kind = pipe                  ? "external pipe"
             : S_ISFIFO(f.mode())  ? "shell job's pipe"
             : f.inherit_fd() < 0  ? "external terminal"
                                   : "shell job's terminal";
    if (pipe) {
      e.outside_holder = pipe->outside_holder();
      e.queued = pipe->data().size();
    }
    const char* end = (f.flags() & O_ACCMODE) == O_RDONLY ? "read" : (f.flags() & O_ACCMODE) == O_WRONLY ? "write" : "read-write";
    for (const auto& [pid, core] : img.cores)
      for (const auto& fd : core.fds())
        if (fd.file_id() == f.id())
          e.owners += std::string(e.owners.empty() ? "" : ",") + "{\"pid\":" + std::to_string(pid) +
                      ",\"fd\":" + std::to_string(fd.fd()) + ",\"end\":\"" + end + "\"}";
  }
  std::string out = "[";
  for (const auto& [key, e] : by_key)
    out += std::string(out.size() > 1 ? "," : "") + "{\"key\":" + json_string(key) + ",\"kind\":\"" + e.kind +
           "\",\"outside_holder\":" + std::to_string(e.outside_holder) +
           ",\"queued_bytes\":" + std::to_string(e.queued) + ",\"owners\":[" + e.owners + "]}";
  return out + "]";
}

// A pre-dump holds memory only: its inventory (with the keeper of the
// write tracking), its chain, and per process the pages it stores.
Result<std::string> inspect_pre_dump(const image::ImageDirReader& reader, const std::string& chain) {
  CRYO_ASSIGN(std::string inventory, to_json(reader.inventory()));
  std::string out = "{\"inventory\":" + inventory + ",\"chain\":" + chain + ",\"processes\":[";
  bool first = true;
  for (const auto& t : reader.inventory().tracking().processes()) {
    image::Mm mm;
    CRYO_TRY(reader.read(image::mm_name(t.pid()), image::Kind::kMm, &mm));
    CRYO_TRY(mm::expand_parent_pages(reader, &mm).wrap(image::mm_name(t.pid())));
    uint64_t pages = 0, in_parents = 0;
    for (const auto& run : mm.pages()) {
      if (!run.checked()) CRYO_TRY(reader.checked_page_run(run));
      (run.level() ? in_parents : pages) += run.npages();
    }
    out += std::string(first ? "" : ",") + "{\"pid\":" + std::to_string(t.pid()) + ",\"tracked\":" +
           (t.keeper_fd() >= 0 ? "true" : "false") + ",\"dumped_pages\":" + std::to_string(pages) +
           ",\"pages_in_parents\":" + std::to_string(in_parents) + "}";
    first = false;
  }
  for (const auto& run : reader.inventory().superseded_pages()) {
    if (run.npages() > (1ULL << 40) / 4096) return Error(EINVAL, "a superseded page run of " + std::to_string(run.npages()) + " pages");
    CRYO_TRY(reader.checked_page_run(run)
                 .wrap("bytes of page files no process names"));
  }
  return out + "],\"pages_bytes\":" + std::to_string(reader.pages_size()) + "}";
}

}  // namespace

Result<std::string> inspect_image(const std::string& dir, bool with_pages) {
  CRYO_ASSIGN(auto reader, image::ImageDirReader::open(dir));
  std::string chain = "[";  // an incremental image's parents, nearest first
  for (uint32_t level = 1; reader.level(level); level++)
    chain += std::string(level > 1 ? "," : "") + json_string(reader.level(level)->dir());
  chain += "]";
  if (reader.inventory().pages_only()) return inspect_pre_dump(reader, chain);
  CRYO_ASSIGN(LoadedImage img, load_image(reader));
  std::string out = "{";
  CRYO_ASSIGN(std::string inventory, to_json(reader.inventory()));
  out += "\"inventory\":" + inventory + ",\"chain\":" + chain;

  const image::Tree& tree = img.tree;
  CRYO_ASSIGN(std::string tree_json, to_json(tree));
  out += ",\"tree\":" + tree_json;

  image::Files& files = img.files;
  if (!with_pages)
    for (auto& shmem : *files.mutable_shmems()) shmem.clear_pages();
  CRYO_ASSIGN(std::string files_json, to_json(files));
  out += ",\"files\":" + files_json;

  out += ",\"processes\":[";
  bool first = true;
  for (const auto& task : tree.tasks()) {
    if (task.state() == image::TaskEntry::ZOMBIE) continue;
    image::Process& core = img.cores.at(task.pid());
    image::Mm& mm = img.mms.at(task.pid());
    uint64_t pages = 0, in_parents = 0;
    for (const auto& run : mm.pages()) (run.level() ? in_parents : pages) += run.npages();
    size_t runs = static_cast<size_t>(mm.pages_size());
    uint64_t inherited = 0;
    for (const auto& run : mm.inherited()) inherited += run.npages();
    if (!with_pages) mm.clear_pages();
    // Registers are raw bytes: show their sizes, not base64 noise.
    for (auto& t : *core.mutable_threads()) {
      t.set_gpregs(std::to_string(t.gpregs().size()) + " bytes");
      t.set_xstate(std::to_string(t.xstate().size()) + " bytes");
    }
    CRYO_ASSIGN(std::string core_json, to_json(core));
    CRYO_ASSIGN(std::string mm_json, to_json(mm));
    out += std::string(first ? "" : ",") + "{\"pid\":" + std::to_string(task.pid()) + ",\"core\":" + core_json +
           ",\"mm\":" + mm_json + ",\"dumped_pages\":" + std::to_string(pages) +
           ",\"page_runs\":" + std::to_string(runs) + ",\"inherited_pages\":" + std::to_string(inherited) +
           ",\"pages_in_parents\":" + std::to_string(in_parents) + "}";
    first = false;
  }
  out += "],\"sockets\":" + sockets_json(img);
  out += ",\"external\":" + external_json(img);
  out += ",\"pages_bytes\":" + std::to_string(reader.pages_size()) + "}";
  return out;
}

}  // namespace cryo
