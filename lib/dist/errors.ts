/** The error a failed rendezvous or collective throws: a peer that died, hung or disagreed. */
import { TorchLoraError } from "../errors";

/**
 * A distributed operation failed on this rank: the rendezvous could not complete, or a collective
 * did not (a peer exited, timed out or is unreachable). The message names the operation, this
 * rank and the backend, and carries libtorch's own reason.
 */
export class DistributedError extends TorchLoraError {}
