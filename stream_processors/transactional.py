"""Exactly once on Kafka's transactions, with aiokafka's public API: a consume-transform-produce
loop that commits its outputs, its state changelog and its input offsets in one transaction.

What it relies on, read in aiokafka 0.14.0 (.venv/lib/python3.11/site-packages/aiokafka) and
checked against this stack's Kafka 4.3.1 (KRaft, one node):

- ``AIOKafkaProducer(transactional_id=...)`` turns idempotence on and acks to all
  (producer/producer.py:260-277). The producer id and epoch come from InitProducerId, sent by the
  sender task (producer/sender.py:193-210), and ``begin_transaction()`` waits for it
  (producer.py:576-582). InitProducerId with a transactional id already in use bumps its epoch:
  the older producer's next request fails with ProducerFenced (sender.py:527, 596, 676, 735),
  and the broker first ends that producer's open transaction, answering CONCURRENT_TRANSACTIONS
  meanwhile, which aiokafka retries (sender.py:451-457). An empty transaction ends in the client,
  no EndTxn sent (sender.py:374-377, transaction_manager.py:229-231). So ``async with
  producer.transaction(): pass`` is the fencing step: when it returns, no older producer of that
  id can commit anything, and whatever it left open is aborted or committed.
- ``producer.transaction()`` commits on leaving and aborts on an exception unless the error was
  fatal, such as being fenced (producer.py:602-605, 636-651).
- ``send_offsets_to_transaction(offsets, group_id)`` takes a group id only (producer.py:607-625)
  and sends TxnOffsetCommit v0, the only version aiokafka defines (protocol/transaction.py:218-241,
  sender.py:625-641): transactional id, group, producer id and epoch; no generation, no member
  id. KIP-447's fencing by the consumer group's generation is therefore not available: a zombie
  is fenced by its transactional id alone. As in Kafka Streams' first exactly-once mode (EOS
  alpha), each input partition has its own transactional producer, id
  ``{group}.{topic}.{partition}``; whoever owns the partition next starts the same id and fences
  the previous owner, even one that does not know yet it was replaced.
- ``consumer.committed(tp)`` asks the group coordinator afresh (consumer/consumer.py:620) with
  OffsetFetch at most v3 (protocol/commit.py:269): no require_stable flag (v7, KIP-447), so the
  broker answers with the last completed commit and ignores a transactional one still pending.
  On this broker, ``committed()`` right after ``commit_transaction()`` returned returned None for a
  moment, the committed offset a little later (the markers are written after EndTxn answers).
  aiokafka also starts reading committed offsets for a new assignment before
  ``on_partitions_assigned`` runs (consumer/group_coordinator.py:482-492). So a new owner fences
  first, then reads ``committed()`` and seeks there; records fetched before that are dropped.
- An exception in a rebalance listener is logged and swallowed (group_coordinator.py:416-427,
  502-514): the loop works only on partitions its listener marked ready.
- ``isolation_level="read_committed"``: the fetcher skips aborted batches and control records
  (consumer/fetcher.py:215-245) and reads up to the last stable offset; ``end_offsets()`` passes
  the isolation level to ListOffsets (fetcher.py:1094), so it answers the last stable offset.
- Kafka 4.x removed the oldest protocol versions (KIP-896) but accepts the v0 transaction
  requests aiokafka sends (InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, EndTxn,
  TxnOffsetCommit) with the first transaction protocol; the second (KIP-890) needs request
  versions aiokafka does not send. Checked here: commit, abort, a fenced zombie's commit
  (ProducerFenced), read_committed hiding the aborted and the zombie's records.
"""
