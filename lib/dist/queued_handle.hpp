// What the MPI and NCCL backends share. QueuedHandleOp: the CommHandle view of a backend's
// queued collective: polling goes through the
// communicator, which completes its collectives in issue order. Destroying a handle whose
// collective is still running waits for it; an error then is left in the communicator's
// failed() state, since a destructor cannot throw. poll_until: waiting on a collective, with
// the timeout that turns a dead or diverged rank into an error.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <utility>

#include <fmt/format.h>

#include "dist/communicator.hpp"

namespace llmlab {

// Comm provides running(const Queued&), test(Queued&) and wait(Queued&). (Not named Op: the
// base class's Op would hide it.)
template <class Comm, class Queued>
class QueuedHandleOp final : public CommHandle::Op {
 public:
  QueuedHandleOp(Comm& c, std::shared_ptr<Queued> op) : comm_(c), op_(std::move(op)) {}
  ~QueuedHandleOp() override {
    if (!comm_.running(*op_)) return;
    try {
      comm_.wait(*op_);
    } catch (...) {  // the communicator is failed() now
    }
  }
  QueuedHandleOp(const QueuedHandleOp&) = delete;
  QueuedHandleOp& operator=(const QueuedHandleOp&) = delete;
  bool test() override { return comm_.test(*op_); }
  void wait() override { comm_.wait(*op_); }

 private:
  Comm& comm_;
  std::shared_ptr<Queued> op_;
};

// Waiting on a collective: spin briefly (small collectives finish in microseconds), then nap,
// doubling up to 1 ms, so an oversubscribed node's waiting ranks leave the cores to the ones
// still computing.
class PollBackoff {
 public:
  void pause() {
    if (polls_++ < 64) {
      std::this_thread::yield();
    } else {
      std::this_thread::sleep_for(nap_);
      nap_ = std::min(nap_ * 2, std::chrono::microseconds(1000));
    }
  }

 private:
  int polls_ = 0;
  std::chrono::microseconds nap_{20};
};

// Polls done() until it returns true; once timeout_s seconds have passed, calls timed_out(),
// which must throw (the backends fail the communicator there).
template <class Done, class TimedOut>
void poll_until(Done done, double timeout_s, TimedOut timed_out) {
  const auto start = std::chrono::steady_clock::now();
  for (PollBackoff backoff;; backoff.pause()) {
    if (done()) return;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > timeout_s) timed_out();
  }
}

// "rank 1 of 2 on host: all_reduce of 8 floats, queued behind broadcast of 4 bytes did not
// complete in 30 s (...)": behind is the collective at the queue's head, or empty.
inline std::string timed_out_message(const std::string& who, const std::string& what, const std::string& behind,
                                     double timeout_s) {
  return fmt::format("{}: {}{} did not complete in {} s (a rank died or diverged)", who, what,
                     behind.empty() ? "" : ", queued behind " + behind, timeout_s);
}

}  // namespace llmlab
