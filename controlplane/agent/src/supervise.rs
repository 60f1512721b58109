//! The watch over the agent's long-running tasks (following etcd, the registration, the
//! peers' liveness): none of them may stop silently. The first one to end, by returning or by
//! panicking, ends the agent with a non-zero exit and a line saying which task and why; the
//! service manager then starts it again, and a restarted agent adopts what this one built
//! (restarting the task in place could not tell what a panic left half-done).

use std::future::Future;

use tokio::task::{JoinError, JoinHandle};

/// A task of the agent and its name for the log.
#[derive(Debug)]
pub struct Supervised {
    name: &'static str,
    handle: JoinHandle<Option<String>>,
}

impl Supervised {
    /// Spawns `task`, named `name`. Its output is `None` (it is not expected to end, so
    /// ending is the failure) or the reason it gave up.
    pub fn spawn<F>(name: &'static str, task: F) -> Supervised
    where
        F: Future<Output = Option<String>> + Send + 'static,
    {
        Supervised {
            name,
            handle: tokio::spawn(task),
        }
    }
}

fn why(name: &str, joined: Result<Option<String>, JoinError>) -> String {
    match joined {
        Ok(Some(reason)) => format!("{name}: {reason}"),
        Ok(None) => format!("{name} stopped"),
        Err(e) if e.is_panic() => {
            let p = e.into_panic();
            let text = p
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".to_owned());
            format!("{name} panicked: {text}")
        }
        Err(_) => format!("{name} was cancelled"),
    }
}

/// The tasks of the agent, watched together.
#[derive(Debug, Default)]
pub struct Tasks {
    tasks: Vec<Supervised>,
}

impl Tasks {
    /// Adds a task.
    pub fn add(&mut self, t: Supervised) {
        self.tasks.push(t);
    }

    /// Waits for the first task to end and says which and why. Pending forever without tasks.
    pub async fn first_failure(&mut self) -> String {
        if self.tasks.is_empty() {
            std::future::pending::<()>().await;
        }
        let (joined, i, _) = futures_select_all(&mut self.tasks).await;
        let t = self.tasks.remove(i);
        why(t.name, joined)
    }

    /// Stops every task.
    pub fn abort(&self) {
        for t in &self.tasks {
            t.handle.abort();
        }
    }
}

/// The first of the handles to finish (a small `select_all`, to avoid a dependency).
async fn futures_select_all(
    tasks: &mut [Supervised],
) -> (Result<Option<String>, JoinError>, usize, ()) {
    std::future::poll_fn(|cx| {
        for (i, t) in tasks.iter_mut().enumerate() {
            if let std::task::Poll::Ready(r) = std::pin::Pin::new(&mut t.handle).poll(cx) {
                return std::task::Poll::Ready((r, i, ()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A task that panics, or that ends, is reported with its name, while the others run on.
    #[tokio::test]
    async fn a_task_that_panics_or_ends_is_named() {
        let mut tasks = Tasks::default();
        tasks.add(Supervised::spawn("forever", std::future::pending()));
        tasks.add(Supervised::spawn("following etcd", async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            panic!("a record made it fall over");
        }));
        let why = tokio::time::timeout(Duration::from_secs(10), tasks.first_failure())
            .await
            .expect("the panic is seen");
        assert_eq!(why, "following etcd panicked: a record made it fall over");

        tasks.add(Supervised::spawn("registration", async {
            Some("node name host1 is held by another host".to_owned())
        }));
        let why = tasks.first_failure().await;
        assert_eq!(why, "registration: node name host1 is held by another host");
        tasks.add(Supervised::spawn("liveness", async { None }));
        assert_eq!(tasks.first_failure().await, "liveness stopped");
        tasks.abort();
    }
}
