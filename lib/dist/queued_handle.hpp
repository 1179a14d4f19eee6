// What the MPI and NCCL backends share. QueuedHandleOp: the CommHandle view of a backend's
// queued collective: polling goes through the
// communicator, which completes its collectives in issue order. Destroying a handle whose
// collective is still running waits for it; an error then is left in the communicator's
// failed() state, since a destructor cannot throw.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>
#include <utility>

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

}  // namespace llmlab
