// Deterministic synthetic text-only training batches for measurements (bench/, the peak-memory test): token ids
// below the special-token range from a fixed LCG; the second half of each row is the supervised "answer".
export function syntheticBatch(batch, seq, vocab) {
  const ids = new BigInt64Array(batch * seq);
  const labels = new BigInt64Array(batch * seq);
  let state = 12345;
  for (let i = 0; i < ids.length; i++) {
    state = (state * 1103515245 + 12345) % 2147483648;
    ids[i] = BigInt(state % Math.min(vocab, 1000));
    labels[i] = i % seq >= seq / 2 ? ids[i] : -100n;
  }
  return {
    input_ids: { dtype: 'I64', shape: [batch, seq], data: ids },
    attention_mask: { dtype: 'I64', shape: [batch, seq], data: new BigInt64Array(batch * seq).fill(1n) },
    labels: { dtype: 'I64', shape: [batch, seq], data: labels },
  };
}
