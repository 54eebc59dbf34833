#include "core/pageserver/lazy_stream.h"

#include <poll.h>

#include <algorithm>
#include <cstring>

#include "core/sys/interrupt.h"
#include "core/sys/log.h"

namespace cryo::pageserver {
namespace {

constexpr uint64_t kPage = 4096;

void put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

bool is_zero_page(const uint8_t* p) {
  const uint64_t* w = reinterpret_cast<const uint64_t*>(p);
  for (size_t i = 0; i < kPage / 8; i++)
    if (w[i]) return false;
  return true;
}

// Whether [start, end) lies inside one of the sorted ranges.
bool inside(const std::vector<std::pair<uint64_t, uint64_t>>& ranges, uint64_t start, uint64_t end) {
  auto it = std::upper_bound(ranges.begin(), ranges.end(), std::make_pair(start, UINT64_MAX));
  return it != ranges.begin() && end <= std::prev(it)->second;
}

std::string describe_progress(uint64_t sent, uint64_t total) {
  return std::to_string(sent) + " of " + std::to_string(total) + " pages sent";
}

}  // namespace

Result<LazySource> LazySource::listen(const Endpoint& at, int* bound_port) {
  LazySource s;
  CRYO_ASSIGN(s.listener_, Channel::listen(at, bound_port));
  s.at_ = at;
  s.at_.port = *bound_port;
  return s;
}

Status LazySource::serve(const LazyPages& pages) {
  log::info("serving " + std::to_string(pages.total_pages) + " pages at " + at_.describe() +
            " for `cryo lazy-pages --page-server`");
  for (;;) {  // the wait may be long: the image goes to the destination first
    CRYO_TRY(check_interrupt("while waiting for the lazy-pages daemon"));
    struct pollfd p = {listener_.get(), POLLIN, 0};
    int n = ::poll(&p, 1, 500);
    if (n < 0 && errno != EINTR) return errno_error("poll " + at_.describe());
    if (n > 0) break;
  }
  CRYO_ASSIGN(auto ch, Channel::accept(listener_.get(), at_));
  listener_.reset();
  Frame hello;
  CRYO_TRY(recv_frame(*ch, &hello).wrap("greeting of the lazy-pages daemon"));
  if (hello.type != FrameType::kHello || hello.arg != static_cast<uint64_t>(Role::kLazy)) {
    std::string why = std::string("this dump serves a lazy migration's pages; got a ") + frame_name(hello.type) +
                      " frame of another role (a dump's pages go to `cryo page-server`)";
    (void)send_frame(*ch, FrameType::kError, 0, why);
    return Error(EPROTO, why);
  }
  CRYO_TRY(send_frame(*ch, FrameType::kOk, kProtocolVersion));
  log::info("the lazy-pages daemon connected");
  std::vector<uint8_t> buf(kMaxLazyPages * kPage), presence(kMaxLazyPages);
  uint64_t sent = 0, zero = 0, requests = 0;
  auto refuse = [&](const std::string& why) -> Status {
    (void)send_frame(*ch, FrameType::kError, 0, why);
    return Error(EPROTO, why);
  };
  for (;;) {
    Frame f;
    bool eof = false;
    auto got = recv_frame(*ch, &f, &eof);
    if (!got.ok() || eof)
      return Error(ECONNRESET, "the lazy-pages daemon went away before it had every page (" +
                                   describe_progress(sent, pages.total_pages) + ")" +
                                   (got.ok() ? std::string() : ": " + got.error().message()));
    if (f.type == FrameType::kBye) {
      CRYO_TRY(send_frame(*ch, FrameType::kOk, sent));
      log::info("the lazy-pages daemon has what it needs: " + describe_progress(sent, pages.total_pages) + " (" +
                std::to_string(zero) + " zero) in " + std::to_string(requests) + " requests");
      return {};
    }
    if (f.type != FrameType::kGet || f.payload.size() != 16)
      return refuse(std::string("a ") + frame_name(f.type) + " frame where a request for pages belongs");
    requests++;
    auto pid = static_cast<int32_t>(f.arg);
    const auto* words = reinterpret_cast<const uint8_t*>(f.payload.data());
    uint64_t addr = get64(words), npages = get64(words + 8);
    auto ranges = pages.ranges.find(pid);
    if (npages == 0 || npages > kMaxLazyPages || addr % kPage || ranges == pages.ranges.end() ||
        !inside(ranges->second, addr, addr + npages * kPage))
      return refuse("pid " + std::to_string(pid) + ": pages " + std::to_string(addr) + " (+" + std::to_string(npages) +
                    ") are not pages this dump serves");
    auto read = pages.read(pid, addr, buf.data(), npages * kPage);
    if (!read.ok()) return refuse("pid " + std::to_string(pid) + ": " + read.error().message());
    // Zero pages travel as a 0 byte: the destination maps the zero page.
    std::vector<struct iovec> pieces = {{presence.data(), npages}};
    for (uint64_t i = 0; i < npages; i++) {
      uint8_t* page = buf.data() + i * kPage;
      presence[i] = is_zero_page(page) ? 0 : 1;
      if (!presence[i]) {
        zero++;
        continue;
      }
      if (pieces.size() > 1 && static_cast<uint8_t*>(pieces.back().iov_base) + pieces.back().iov_len == page)
        pieces.back().iov_len += kPage;
      else
        pieces.push_back({page, kPage});
    }
    CRYO_TRY(send_frame(*ch, FrameType::kPages, addr, pieces.data(), pieces.size())
                 .wrap("sending pages to the lazy-pages daemon (" + describe_progress(sent, pages.total_pages) + ")"));
    sent += npages;
  }
}

Result<std::unique_ptr<LazyFetcher>> LazyFetcher::connect(const Endpoint& to) {
  auto f = std::make_unique<LazyFetcher>();
  f->peer_ = "the source at " + to.describe();
  CRYO_ASSIGN(f->ch_, Channel::connect(to).wrap(f->peer_ + " (`cryo dump --lazy-pages` there)"));
  // A source that stops answering for this long is as good as gone: the
  // restored tree waits on it.
  f->ch_->set_timeout(60);
  CRYO_TRY(send_frame(*f->ch_, FrameType::kHello, static_cast<uint64_t>(Role::kLazy)).wrap(f->peer_));
  CRYO_TRY(expect_frame(*f->ch_, FrameType::kOk, f->peer_));
  return f;
}

std::vector<AnsweredRun> answered_runs(const Frame& answer, uint64_t npages) {
  const auto* presence = reinterpret_cast<const uint8_t*>(answer.payload.data());
  const uint8_t* data = presence + npages;
  std::vector<AnsweredRun> runs;
  for (uint64_t i = 0; i < npages;) {
    uint64_t j = i;
    while (j < npages && presence[j] == presence[i]) j++;
    runs.push_back({i, j - i, presence[i] ? data : nullptr});
    if (presence[i]) data += (j - i) * kPage;
    i = j;
  }
  return runs;
}

Status LazyFetcher::fetch(int32_t pid, uint64_t addr, uint64_t npages, Frame* out) {
  Request r{pid, addr, npages};
  CRYO_TRY(ask(r));
  return answer(r, out);
}

Status LazyFetcher::fetch_all(const std::vector<Request>& requests, std::vector<Frame>* out) {
  // The requests are a few bytes each: they all fit the socket's buffer
  // while the source's answers wait to be read.
  for (const auto& r : requests) CRYO_TRY(ask(r));
  out->resize(requests.size());
  for (size_t i = 0; i < requests.size(); i++) CRYO_TRY(answer(requests[i], &(*out)[i]));
  return {};
}

Status LazyFetcher::ask(const Request& r) {
  uint8_t request[16];
  put64(request, r.addr);
  put64(request + 8, r.npages);
  return send_frame(*ch_, FrameType::kGet, static_cast<uint32_t>(r.pid),
                    std::string_view(reinterpret_cast<char*>(request), sizeof request))
      .wrap(peer_);
}

Status LazyFetcher::answer(const Request& r, Frame* out) {
  uint64_t addr = r.addr, npages = r.npages;
  CRYO_ASSIGN(*out, expect_frame(*ch_, FrameType::kPages, peer_));
  if (out->arg != addr || out->payload.size() < npages)
    return Error(EPROTO, peer_ + " answered with other pages than asked for");
  const auto* presence = reinterpret_cast<const uint8_t*>(out->payload.data());
  uint64_t present = 0;
  for (uint64_t i = 0; i < npages; i++) {
    if (presence[i] > 1) return Error(EPROTO, peer_ + " sent a malformed answer");
    present += presence[i];
  }
  if (out->payload.size() != npages + present * kPage)
    return Error(EPROTO, peer_ + " sent " + std::to_string(out->payload.size()) + " bytes for " +
                             std::to_string(npages) + " pages (a truncated answer)");
  bytes_ += out->payload.size();
  return {};
}

Status LazyFetcher::bye() {
  CRYO_TRY(send_frame(*ch_, FrameType::kBye, 0).wrap(peer_));
  CRYO_TRY(expect_frame(*ch_, FrameType::kOk, peer_));
  return {};
}

}  // namespace cryo::pageserver
