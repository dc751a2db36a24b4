/**
 * DistributedSampler against PyTorch's torch.utils.data.DistributedSampler (same libtorch
 * randperm): the same indices for every rank, epoch, shuffle and dropLast setting.
 */
import { dist } from "../../lib";
import { itTorch, py } from "../helpers/python";

const CASES = [
  { n: 10, replicas: 3, shuffle: false, dropLast: false },
  { n: 10, replicas: 3, shuffle: false, dropLast: true },
  { n: 10, replicas: 3, shuffle: true, dropLast: false },
  { n: 11, replicas: 4, shuffle: true, dropLast: true },
  { n: 2, replicas: 5, shuffle: true, dropLast: false }, // padding repeats the indices more than once
  { n: 12, replicas: 2, shuffle: true, dropLast: false },
];

describe("DistributedSampler", () => {
  itTorch("gives each rank the indices PyTorch's DistributedSampler gives it, epoch by epoch", () => {
    const expected = py<number[][][][]>(
      `
from torch.utils.data import DistributedSampler
out = []
for c in inp["cases"]:
    per_rank = []
    for rank in range(c["replicas"]):
        s = DistributedSampler(list(range(c["n"])), num_replicas=c["replicas"], rank=rank, shuffle=c["shuffle"], seed=7, drop_last=c["dropLast"])
        epochs = []
        for epoch in range(3):
            s.set_epoch(epoch)
            epochs.append(list(iter(s)))
        per_rank.append(epochs)
    out.append(per_rank)
`,
      { cases: CASES },
    );
    CASES.forEach((c, i) => {
      for (let rank = 0; rank < c.replicas; rank++) {
        const s = new dist.DistributedSampler(c.n, { numReplicas: c.replicas, rank, shuffle: c.shuffle, seed: 7, dropLast: c.dropLast });
        for (let epoch = 0; epoch < 3; epoch++) {
          s.setEpoch(epoch);
          expect([...s]).toEqual(expected[i][rank][epoch]);
          expect(s.length).toBe(expected[i][rank][epoch].length);
        }
      }
    });
  });

  it("splits 0..n-1 into disjoint equal parts without shuffle (worked by hand)", () => {
    const parts = [0, 1, 2].map((rank) => [...new dist.DistributedSampler(7, { numReplicas: 3, rank, shuffle: false })]);
    expect(parts).toEqual([[0, 3, 6], [1, 4, 0], [2, 5, 1]]); // padded to 9 by repeating 0, 1
    const dropped = [0, 1, 2].map((rank) => [...new dist.DistributedSampler(7, { numReplicas: 3, rank, shuffle: false, dropLast: true })]);
    expect(dropped).toEqual([[0, 3], [1, 4], [2, 5]]);
  });

  it("bad options: clear errors", () => {
    expect(() => new dist.DistributedSampler(5, { numReplicas: 2, rank: 2 })).toThrow(/rank: expected an integer in \[0, 1\], got 2/);
    expect(() => new dist.DistributedSampler(-1)).toThrow(/datasetSize: expected an integer >= 0, got -1/);
    expect(() => new dist.DistributedSampler(5, { shuffle: "yes" as never })).toThrow(/shuffle: expected a boolean, got the string "yes"/);
    expect(() => new dist.DistributedSampler(5).setEpoch(1.5)).toThrow(/epoch: expected an integer >= 0, got 1.5/);
  });
});
