#!/usr/bin/env bash
# SFT cold start, measured: synthesize the shortest tasks available (code, difficulty 1: ~1.2k
# tokens and 4 actions per reference run, vs ~5.3k tokens and 9 actions for trip d1), train the
# micro policy from scratch on the train split's reference trajectories, and evaluate the
# checkpoint on the held-out (test-split) worlds. The figures of one run are in docs/sft.md.
#
#   scripts/sft_cold_start.sh [RUN_DIR]      (default runs/sft-cold-start)
#
# CPU only; one intra-op thread (a shared CPU stalls a second OpenMP thread). Stages are
# resumable: synth and train sft resume their outputs, eval resumes its results.jsonl.
set -euo pipefail
RUN=${1:-runs/sft-cold-start}
STEPS=${STEPS:-400}
TASKS=${TASKS:-400}
EVAL_TASKS=${EVAL_TASKS:-12}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
mkdir -p "$RUN"

# 1. the dataset: code d1, splits by world (train / val / test)
toolgym synth --family code --difficulty 1 --count "$TASKS" --seed 1 --out "$RUN/code-d1.duckdb"

# 2. SFT from scratch (tokenizer trained on the train split), micro model, loss on action tokens;
#    held-out loss, action validity and next-call accuracy on the val split every 100 steps
/usr/bin/time -f "train sft: %e s wall, %U s user CPU" \
  toolgym train sft -d "$RUN/code-d1.duckdb" --out "$RUN/sft" --init none --model micro \
    --steps "$STEPS" --batch-size 4 --seq-len 2048 --lr 3e-3 --eval-every 100 \
    --checkpoint-every 100 --action-prompts 32

# 3. pass@1 / pass@8 on held-out worlds (test split), 8 samples per task at temperature 1
evaluate() {  # CHECKPOINT OUT
  /usr/bin/time -f "eval $2: %e s wall, %U s user CPU" \
    toolgym eval --policy model --checkpoint "$1" -d "$RUN/code-d1.duckdb" --split test \
      --limit "$EVAL_TASKS" -n 8 -k 1 -k 8 --temperature 1.0 --max-new-tokens 320 --device cpu --out "$2"
}
evaluate "$RUN/sft/checkpoint" "$RUN/eval-t1"

# 4. 400 more steps: a copy of the run resumed with --steps 800 (same batches as an uninterrupted
#    run; the cosine restarts at step 400 of an 800-step schedule, lr 3e-3 -> ~1.6e-3), then eval
if [ ! -d "$RUN/sft-800" ]; then cp -r "$RUN/sft" "$RUN/sft-800"; fi
/usr/bin/time -f "train sft 400->800: %e s wall, %U s user CPU" \
  toolgym train sft -d "$RUN/code-d1.duckdb" --out "$RUN/sft-800" --init none --model micro \
    --steps $((2 * STEPS)) --batch-size 4 --seq-len 2048 --lr 3e-3 --eval-every 100 \
    --checkpoint-every 100 --action-prompts 32
evaluate "$RUN/sft-800/checkpoint" "$RUN/eval-800-t1"

# 5. the same validity rule on the policy's own rollouts (not teacher-forced)
python scripts/rollout_validity.py "$RUN/eval-t1/results.jsonl" "$RUN/code-d1.duckdb"
python scripts/rollout_validity.py "$RUN/eval-800-t1/results.jsonl" "$RUN/code-d1.duckdb"

# 6. greedy pass@1 of the 800-step checkpoint (one sample per task at temperature 0)
/usr/bin/time -f "eval greedy: %e s wall, %U s user CPU" \
  toolgym eval --policy model --checkpoint "$RUN/sft-800/checkpoint" -d "$RUN/code-d1.duckdb" --split test \
    --limit "$EVAL_TASKS" -n 1 -k 1 --temperature 0 --max-new-tokens 320 --device cpu --out "$RUN/eval-800-greedy"

# 7. stage 2 (docs/sft.md): 4x the reference episodes (1,600 code d1 tasks; the first 400 are the
#    same, and splits are by world, so no val/test world leaks into train), 1,200 steps from the
#    800-step checkpoint (--init keeps its tokenizer), lr 2e-3, validity on 64 val prompts
toolgym synth --family code --difficulty 1 --count 1600 --seed 1 --out "$RUN/code-d1-1600.duckdb"
/usr/bin/time -f "train sft stage 2: %e s wall, %U s user CPU" \
  toolgym train sft -d "$RUN/code-d1-1600.duckdb" --out "$RUN/sft-stage2" --init "$RUN/sft-800/checkpoint" \
    --steps 1200 --batch-size 4 --seq-len 2048 --lr 2e-3 --eval-every 200 --checkpoint-every 200 --action-prompts 64
for t in 1.0 0; do
  n=$([ "$t" = 0 ] && echo 1 || echo 8)
  /usr/bin/time -f "eval stage 2 t=$t: %e s wall, %U s user CPU" \
    toolgym eval --policy model --checkpoint "$RUN/sft-stage2/checkpoint" -d "$RUN/code-d1-1600.duckdb" --split test \
      --limit 16 -n "$n" -k 1 $([ "$n" = 8 ] && echo "-k 8") --temperature "$t" --max-new-tokens 320 --max-turns 8 \
      --device cpu --out "$RUN/eval-stage2-t$t"
  python scripts/rollout_validity.py "$RUN/eval-stage2-t$t/results.jsonl" "$RUN/code-d1-1600.duckdb"
done
