// How the model reaches its parameters: before each use of a unit's tensors (an embedding, a
// layer, the head; lib/spec ParamUnit) it acquires the unit, which binds the tensors in
// Weights to where they are for that use; after it releases the unit. Alone in a process
// this is nothing (the whole buffers are always bound); under ZeRO (lib/optim/zero) acquire
// gathers a sharded unit and points its gradients at a bucket, and release starts the
// gradient reduction, so communication follows the model's own order of use.
#pragma once

#include <cstddef>

namespace llmlab {

class ParamAccess {
 public:
  virtual ~ParamAccess() = default;
  // A micro-batch's passes begin: `training` (forward then backward) or evaluation (forward
  // only); `last` marks the last micro-batch before an optimizer step.
  virtual void begin_micro_batch(bool training, bool last) = 0;
  // The unit's tensors must be readable (and, with `grads`, gradient-writable, accumulating)
  // until release. The model holds one unit at a time.
  virtual void acquire(std::size_t unit, bool grads) = 0;
  virtual void release(std::size_t unit, bool grads) = 0;
};

}  // namespace llmlab
