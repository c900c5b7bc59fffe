// Learning from feedback: durable per-user feedback datasets, background per-user LoRA training beside inference,
// promotion only when better on held-out samples, versions and rollback.
export { FeedbackStore, checkUser, feedbackError, USER_PATTERN, type FeedbackInput, type StoredFeedback, type FeedbackError, type FeedbackErrorCode } from './store.js';
export {
  Personalizer, isBetter, timeSplit, candidateName, DEFAULT_MIN_NEW_SAMPLES, DEFAULT_HOLDOUT, DEFAULT_MIN_HOLDOUT,
  type PersonalizerOptions, type PersonalizerEvent, type Decision, type DecisionKind, type HeldOutMetrics, type CurrentPointer,
  type UserStatus, type JobProgress, type FeedbackReceipt, type TrainFrom,
} from './personalizer.js';
export { appendLineDurable, repairTail, writeFileDurable } from './durable.js';
