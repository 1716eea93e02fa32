//! Property test: any sequence of appends (sizes 0..5000, across 64 KiB segment boundaries) and
//! reopens reads back exactly, and a reader from any seq returns exactly the suffix.

mod common;

use berth_log::{Durability, EventLog, Seq};
use common::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Operation {
    Append(usize),
    AppendBatch(Vec<usize>),
    Reopen,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        6 => (0usize..5000).prop_map(Operation::Append),
        2 => proptest::collection::vec(0usize..5000, 1..8).prop_map(Operation::AppendBatch),
        1 => Just(Operation::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn appends_and_reopens_round_trip(operations in proptest::collection::vec(operation(), 1..60), reader_starts in proptest::collection::vec(0u64..200, 5)) {
        let dir = tempfile::tempdir().unwrap();
        let options = small_options(Durability::NoSync);
        let mut expected: Vec<Vec<u8>> = Vec::new();
        let (mut log, _) = EventLog::open(dir.path(), options.clone()).unwrap();
        for operation in operations {
            match operation {
                Operation::Append(len) => {
                    let payload = payload_for(expected.len() as u64 + 1, len);
                    prop_assert_eq!(log.append(&payload).unwrap(), Seq(expected.len() as u64 + 1));
                    expected.push(payload);
                }
                Operation::AppendBatch(lens) => {
                    let payloads: Vec<Vec<u8>> = lens.iter().enumerate().map(|(index, &len)| payload_for(expected.len() as u64 + 1 + index as u64, len)).collect();
                    let slices: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
                    prop_assert_eq!(log.append_batch(&slices).unwrap(), Seq(expected.len() as u64 + 1));
                    expected.extend(payloads);
                }
                Operation::Reopen => {
                    drop(log);
                    let (reopened, report) = EventLog::open(dir.path(), options.clone()).unwrap();
                    prop_assert_eq!(report.last_seq, Seq(expected.len() as u64));
                    prop_assert!(report.torn_tail.is_none());
                    log = reopened;
                }
            }
        }
        prop_assert_eq!(log.last_seq(), Seq(expected.len() as u64));
        let all: Vec<Vec<u8>> = read_all(&log, Seq(1)).into_iter().map(|(_, payload)| payload).collect();
        prop_assert_eq!(&all, &expected);
        for start in reader_starts {
            let from = start % (expected.len() as u64 + 2);
            let suffix = read_all(&log, Seq(from));
            let first = from.max(1);
            prop_assert_eq!(suffix.len() as u64, (expected.len() as u64 + 1).saturating_sub(first));
            for (index, (seq, payload)) in suffix.iter().enumerate() {
                prop_assert_eq!(*seq, Seq(first + index as u64));
                prop_assert_eq!(payload, &expected[(first - 1) as usize + index]);
            }
        }
        prop_assert_eq!(log.verify().unwrap().n_records, expected.len() as u64);
    }
}
