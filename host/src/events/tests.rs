use super::*;

fn call(id: ObjectId) -> NewCall<'static> {
    NewCall {
        id,
        kind: CallKind::Task,
        function: "square",
        args_bytes: 3,
        depends_on: &[],
        actor: None,
        submitted: Instant::now(),
        from_peer: false,
    }
}

#[test]
fn a_task_s_transitions_are_recorded_in_order() {
    let events = TaskEvents::new("head");
    let job = JobId::random();
    let id = ObjectId::random();
    let trace = events.record(job, call(id)).unwrap();
    trace.queued();
    trace.started(0, &[]);
    trace.blocked();
    trace.resumed();
    trace.attempt_ended(Err(ErrorKind::WorkerDied), true);
    trace.queued();
    trace.placed(1, "node-b");
    let mut error = WireError::new(ErrorKind::Panic, "boom");
    error.origin = Some(Box::new(prism_abi::ErrorOrigin {
        task: id.to_string(),
        function: "square".into(),
        node: 0,
        output: vec!["last words".into()],
    }));
    trace.finished(Err(&error));
    let (tasks, unrecorded) = events.job(job).unwrap().snapshot();
    assert_eq!(unrecorded, 0);
    let t = &tasks[0];
    assert_eq!(t.task_id, id.to_string());
    assert_eq!(t.state, "failed");
    assert_eq!(t.error_kind, "panic");
    assert_eq!(t.error, "boom");
    assert_eq!(t.output, vec!["last words".to_string()]);
    assert_eq!(t.attempts.len(), 2);
    assert_eq!(t.attempts[0].node, "head");
    assert_eq!(t.attempts[0].outcome, "worker_died");
    assert_eq!(t.attempts[0].blocked.len(), 1);
    assert!(t.attempts[0].queued_us > 0);
    assert_eq!(t.attempts[1].node, "node-b");
    assert_eq!(t.attempts[1].outcome, "panic");
    assert!(t.ended_us >= t.attempts[1].started_us);
}

#[test]
fn a_job_keeps_at_most_its_bound_and_counts_the_rest() {
    let events = TaskEvents::new("head");
    let job = JobId::random();
    for _ in 0..MAX_TASKS_PER_JOB + 5 {
        let _ = events.record(job, call(ObjectId::random()));
    }
    let (tasks, unrecorded) = events.job(job).unwrap().snapshot();
    assert_eq!(tasks.len(), MAX_TASKS_PER_JOB);
    assert_eq!(unrecorded, 5);
}

#[test]
fn error_text_past_the_detail_budget_is_dropped_but_the_cause_kept() {
    let events = TaskEvents::new("head");
    let job = JobId::random();
    let big = "x".repeat(MAX_ERROR_BYTES);
    let mut kept = 0;
    let mut last = None;
    for _ in 0..(MAX_DETAIL_BYTES / MAX_ERROR_BYTES) + 10 {
        let trace = events.record(job, call(ObjectId::random())).unwrap();
        trace.started(0, &[]);
        trace.finished(Err(&WireError::new(ErrorKind::Application, big.clone())));
        last = Some(trace);
    }
    let (tasks, _) = events.job(job).unwrap().snapshot();
    for t in &tasks {
        assert_eq!(t.error_kind, "application");
        if !t.error.is_empty() {
            kept += 1;
        }
    }
    assert_eq!(kept, MAX_DETAIL_BYTES / MAX_ERROR_BYTES);
    assert!(last.unwrap().to_proto().error.is_empty());
}

#[test]
fn an_ended_job_records_nothing_more() {
    let events = TaskEvents::new("head");
    let job = JobId::random();
    events.record(job, call(ObjectId::random())).unwrap();
    events.job_ended(job);
    assert!(events.record(job, call(ObjectId::random())).is_none());
    // Its records stay for the head to gather.
    assert_eq!(events.job(job).unwrap().snapshot().0.len(), 1);
}

#[test]
fn a_blocked_span_still_open_shows_until_now() {
    let events = TaskEvents::new("head");
    let trace = events
        .record(JobId::random(), call(ObjectId::random()))
        .unwrap();
    trace.started(0, &[1]);
    trace.blocked();
    let t = trace.to_proto();
    assert_eq!(t.state, "running");
    assert_eq!(t.attempts[0].gpus, vec![1]);
    assert_eq!(t.attempts[0].blocked.len(), 1);
    assert_eq!(t.attempts[0].blocked[0].end_us, 0);
}

#[test]
fn long_messages_are_cut_on_a_character_boundary() {
    let text = "é".repeat(MAX_ERROR_BYTES);
    let cut_text = cut(&text, MAX_ERROR_BYTES - 1);
    assert!(cut_text.len() < MAX_ERROR_BYTES);
    assert!(cut_text.chars().all(|c| c == 'é'));
}
