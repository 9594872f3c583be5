//! One watch per kind, shared by every controller that needs it: the watch fills a cache
//! (without managed fields, which the operator never reads) and fans each change out to
//! the controllers that subscribed.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// A watched kind: its cache, and the subscribers that hear of every change.
pub struct Cache<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    writer: Option<reflector::store::Writer<K>>,
    subscribers: Arc<Mutex<Vec<mpsc::UnboundedSender<K>>>>,
    listed: Arc<AtomicBool>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Debug for Cache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("kind", &K::kind(&()))
            .finish()
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone,
{
    pub fn new() -> Self {
        let (store, writer) = reflector::store();
        Self {
            store,
            writer: Some(writer),
            subscribers: Arc::default(),
            listed: Arc::default(),
        }
    }

    /// The cache; empty until the first list has arrived.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Set once the first list has arrived: before it, a missing object only means "not
    /// listed yet". (Polling `Store::wait_until_ready` without awaiting it is not safe.)
    pub fn listed(&self) -> Arc<AtomicBool> {
        self.listed.clone()
    }

    /// A stream of every object that changes from now on, starting with all of them.
    /// Subscribe before calling [`Cache::watch`].
    pub fn subscribe(&self) -> impl Stream<Item = Result<K, watcher::Error>> + Send + 'static {
        let (sender, receiver) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(sender);
        UnboundedReceiverStream::new(receiver).map(Ok)
    }

    /// The watch that fills the cache and feeds the subscribers; runs until dropped.
    pub fn watch(
        &mut self,
        api: Api<K>,
        config: watcher::Config,
    ) -> impl Future<Output = ()> + Send + 'static {
        let writer = self.writer.take().unwrap_or_else(|| reflector::store().1);
        let subscribers = self.subscribers.clone();
        let stream = watcher(api, config)
            .default_backoff()
            .modify(|object: &mut K| object.managed_fields_mut().clear())
            .inspect({
                let listed = self.listed.clone();
                move |event| {
                    if let Ok(watcher::Event::InitDone) = event {
                        listed.store(true, Ordering::SeqCst);
                    }
                }
            })
            .reflect(writer)
            .touched_objects();
        async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                match event {
                    Ok(object) => fan_out(&subscribers, &object),
                    Err(error) => {
                        tracing::warn!(kind = %K::kind(&()), error = %error, "watch failed; retrying")
                    }
                }
            }
        }
    }
}

impl<K> Default for Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    fn default() -> Self {
        Self::new()
    }
}

fn fan_out<K: Clone>(subscribers: &Mutex<Vec<mpsc::UnboundedSender<K>>>, object: &K) {
    let mut subscribers = subscribers.lock().unwrap_or_else(|e| e.into_inner());
    subscribers.retain(|sender| sender.send(object.clone()).is_ok());
}
