//! rkube-kubelet: the node agent's API side — registering nodes, renewing their leases and
//! reporting pod status.
//!
//! Today it holds only [`simulated`]: nodes without containers, as kwok simulates them, for
//! scheduling and scale work. The real kubelet (pod workers over a container runtime, probes,
//! volumes, the streaming server) will be further modules beside it. It talks to the cluster
//! only through the API (a `kube::Client`), never to the store.

pub mod simulated;
