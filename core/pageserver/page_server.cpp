#include "core/pageserver/page_server.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pageserver/protocol.h"
#include "core/sys/io.h"
#include "core/sys/log.h"

namespace cryo::pageserver {
namespace {

constexpr uint64_t kFrameBytes = 8u << 20;

class RemotePageSink : public image::PageSink {
 public:
  RemotePageSink(std::unique_ptr<Channel> ch, std::string peer) : ch_(std::move(ch)), peer_(std::move(peer)) {}

  Status write(uint64_t offset, const struct iovec* pieces, size_t count) override {
    // Frames of at most kFrameBytes, a piece split where it must be.
    std::vector<struct iovec> frame;
    uint64_t in_frame = 0;
    auto flush = [&]() -> Status {
      if (frame.empty()) return {};
      auto st = send_frame(*ch_, FrameType::kData, offset, frame.data(), frame.size());
      if (!st.ok()) return why_gone(std::move(st).error());
      offset += in_frame;
      frame.clear();
      in_frame = 0;
      return {};
    };
    for (size_t i = 0; i < count; i++) {
      auto* base = static_cast<uint8_t*>(pieces[i].iov_base);
      for (size_t at = 0; at < pieces[i].iov_len;) {
        size_t take = std::min<uint64_t>(pieces[i].iov_len - at, kFrameBytes - in_frame);
        frame.push_back({base + at, take});
        in_frame += take;
        at += take;
        if (in_frame == kFrameBytes) CRYO_TRY(flush());
      }
    }
    return flush();
  }

  Status finish(uint64_t size) override {
    auto st = send_frame(*ch_, FrameType::kFinish, size);
    if (!st.ok()) return why_gone(std::move(st).error());
    ch_->set_timeout(300);  // the server syncs the file to its disk first
    CRYO_TRY(expect_frame(*ch_, FrameType::kOk, "page server " + peer_));
    log::info("page server " + peer_ + " holds pages.img (" + std::to_string(size) + " bytes)");
    return {};
  }

 private:
  // A send failed: the server may have said why before it hung up.
  Error why_gone(Error err) {
    ch_->set_timeout(2);
    Frame f;
    if (recv_frame(*ch_, &f).ok() && f.type == FrameType::kError)
      return Error(EPROTO, "page server " + peer_ + " refused the pages: " + f.payload);
    return std::move(err).wrap("page server " + peer_ + " is gone");
  }

  std::unique_ptr<Channel> ch_;
  std::string peer_;
};

// One dump's pages.img, written under a temporary name and renamed once the
// dump says it is whole.
Status receive_pages(Channel& ch, const std::string& dir) {
  std::string tmp = dir + "/.pages.img.tmp", final_path = dir + "/pages.img";
  CRYO_ASSIGN(UniqueFd fd, open_file(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  bool kept = false;
  struct Unlink {
    const std::string& path;
    bool& kept;
    ~Unlink() {
      if (!kept) ::unlink(path.c_str());
    }
  } unlink_tmp{tmp, kept};
  uint64_t received = 0;
  Frame f;
  for (;;) {
    bool eof = false;
    CRYO_TRY(recv_frame(ch, &f, &eof));
    if (eof)
      return Error(ECONNRESET, "the dump's stream ended after " + std::to_string(received) +
                                   " bytes without finishing (truncated): nothing kept");
    if (f.type == FrameType::kData) {
      if (f.arg != received)
        return Error(EPROTO, "data for offset " + std::to_string(f.arg) + " arrived where " + std::to_string(received) +
                                 " was next (a corrupt stream)");
      CRYO_TRY(pwrite_all(fd.get(), f.payload.data(), f.payload.size(), static_cast<off_t>(received)).wrap("write " + tmp));
      received += f.payload.size();
    } else if (f.type == FrameType::kFinish) {
      if (f.arg != received)
        return Error(EPROTO, "the dump says pages.img has " + std::to_string(f.arg) + " bytes, " +
                                 std::to_string(received) + " arrived (a truncated stream)");
      if (::fsync(fd.get()) < 0) return errno_error("fsync " + tmp);
      if (::rename(tmp.c_str(), final_path.c_str()) < 0) return errno_error("rename " + tmp);
      kept = true;
      if (auto d = open_file(dir, O_RDONLY | O_DIRECTORY); d.ok()) ::fsync(d->get());
      CRYO_TRY(send_frame(ch, FrameType::kOk, received));
      log::info("pages.img of " + std::to_string(received) + " bytes is in " + dir);
      return {};
    } else {
      return Error(EPROTO, std::string("a ") + frame_name(f.type) + " frame in a stream of pages");
    }
  }
}

}  // namespace

Status run_page_server(const ServerOptions& options, const std::function<void(int port)>& on_listening) {
  struct stat st;
  if (::stat(options.images_dir.c_str(), &st) < 0 || !S_ISDIR(st.st_mode))
    return Error(ENOTDIR, "image directory " + options.images_dir);
  int port = 0;
  CRYO_ASSIGN(UniqueFd listener, Channel::listen(options.endpoint, &port));
  log::info("page server listening on " + options.endpoint.describe() + " (port " + std::to_string(port) + ")");
  if (on_listening) on_listening(port);
  CRYO_ASSIGN(auto ch, Channel::accept(listener.get(), options.endpoint));
  listener.reset();
  ch->set_timeout(600);  // a dump may take a while between its pages, never this long
  Frame hello;
  CRYO_TRY(recv_frame(*ch, &hello).wrap("greeting"));
  if (hello.type != FrameType::kHello || hello.arg != static_cast<uint64_t>(Role::kStore)) {
    std::string why = std::string("expected a dump's greeting, got a ") + frame_name(hello.type) + " frame";
    (void)send_frame(*ch, FrameType::kError, 0, why);
    return Error(EPROTO, why);
  }
  CRYO_TRY(send_frame(*ch, FrameType::kOk, kProtocolVersion));
  auto received = receive_pages(*ch, options.images_dir);
  if (!received.ok()) (void)send_frame(*ch, FrameType::kError, 0, received.error().message());
  return received;
}

Result<std::unique_ptr<image::PageSink>> connect_page_sink(const Endpoint& to) {
  std::string peer = to.describe();
  CRYO_ASSIGN(auto ch, Channel::connect(to).wrap("page server"));
  ch->set_timeout(60);
  CRYO_TRY(send_frame(*ch, FrameType::kHello, static_cast<uint64_t>(Role::kStore)).wrap("page server " + peer));
  CRYO_TRY(expect_frame(*ch, FrameType::kOk, "page server " + peer));
  return std::unique_ptr<image::PageSink>(new RemotePageSink(std::move(ch), peer));
}

}  // namespace cryo::pageserver
