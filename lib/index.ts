// pigg's public API: the engine (Qwen3VL, Trainer, random checkpoints, fixture runs) and safetensors I/O; the
// processor (tokenizer, image processing and its worker pool, sample encoding); the data layer (sample types, the
// dataset manifest, folds, metrics, answer parsing, the FingerTip, ScreenSpot and synthetic datasets); the
// experiment runners (eval, global, personalized, predict, training, demo, presets); the Grounder and its answer
// grammars; serving (serve, startServer); the report (writeReport) and visualizations; and learning from feedback
// (Personalizer, FeedbackStore).
export { Qwen3VL, inspectCheckpoint, engineVersions, engineDefaults, FORWARD_OUTPUTS } from './engine/model.js';
export type { LoadOptions, LoadCallOptions, ModelInfo, CheckpointSummary, EngineDefaults, GenerateOptions, GenerateResult, ForwardOutput, NamedTensors, AdapterInfo, GrammarHandle } from './engine/model.js';
export { Trainer } from './engine/trainer.js';
export type { TrainerOptions, StepReport, TrainerInfo } from './engine/trainer.js';
export { initRandomModel, modelConfig, CONFIG_NAMES } from './engine/configs.js';
export { checkSampling, generationConfigSampling, type SamplingOptions } from './engine/sampling.js';
export { runFixtureCase, checkFixtureCase, compareFixture } from './engine/fixture.js';
export { readSafetensors, writeSafetensors, type HostTensor, type DType } from './safetensors.js';

export { QwenTokenizer, writeTokenizerFiles } from './processor/tokenizer.js';
export { processImage, smartResize, PIGG_PIXELS, PIGG_EFFECTIVE_PIXELS, QWEN3_VL_PIXELS } from './processor/image.js';
export type { ProcessedImage, ImageProcessorOptions } from './processor/image.js';
export { ImagePool, defaultImageWorkers, type ImageProcessor } from './processor/image-pool.js';
export { encodeSample, collate, buildBatch, toHostTensors } from './processor/sample.js';
export type { SampleSpec, ModelInputs, SampleMode } from './processor/sample.js';

export type { Sample, Point, DatasetInfo } from './data/types.js';
export { readDataset, writeDataset, parseUserSpec, selectSamples, listUsers } from './data/manifest.js';
export { kFolds, createKFolds, PythonRandom } from './data/folds.js';
export { scoreSample, scoreGrid, foldMetrics, userSummary, overallSummary, toGrid, fromGrid } from './data/metrics.js';
export { parseAnswer, parsePiggInference, readAnswer, formatAnswer, buildInstructionPrompt, type ParserName } from './data/parse.js';
export { convertFingertip, writeFingertipDataset } from './data/fingertip.js';
export { loadScreenSpot, loadScreenSpotPro } from './data/screenspot.js';
export { writeSynthDataset } from './data/synth/index.js';

export { runEval, runTrainGlobal, runPersonalize, type ProgressEvent } from './experiments/runs.js';
export { predict } from './experiments/predict.js';
export { scoreRecord, type EvalRecord } from './data/records.js';
export { PIGG_EXACT, type PromptSettings, type Decoding } from './processor/inputs.js';
export { Grounder, CONSTRAIN_OPTIONS, DEFAULT_MAX_BATCH, longestAnswerBytes } from './grounding/grounder.js';
export { answerGrammar, tokenBytes, allowedTokens, advanceState } from './grounding/grammar.js';
export type { ConstrainStyle, CompiledGrammar, TokenBytes } from './grounding/grammar.js';
export { serve, adapterFolders, type ServeOptions, type Serving } from './serve/serve.js';
export { startServer, type ServerOptions, type RunningServer, type ServedGrounder } from './serve/server.js';
export type { GrounderOptions, GrounderSettings, GroundOptions, GroundResult, GroundSamplesOptions, BatchStats, ConstrainOption, GrounderError, GrounderErrorCode } from './grounding/grounder.js';
export { trainRun } from './experiments/train.js';
export { runDemo } from './experiments/demo.js';
export { PRESETS, PIGG_LORA, type TrainConfig } from './training/presets.js';
export { writeReport } from './report/html.js';
export { visualizeRun, visualizeRecords } from './report/visualize.js';
export { Personalizer, FeedbackStore, isBetter, timeSplit, type PersonalizerOptions, type PersonalizerEvent, type Decision, type HeldOutMetrics, type UserStatus, type FeedbackInput, type FeedbackReceipt } from './personalize/index.js';
