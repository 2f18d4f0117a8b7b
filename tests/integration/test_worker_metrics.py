"""Queue and DLQ depth as Prometheus samples, read from moto SQS at scrape time."""

from services import aws
from services.settings import WorkerSettings
from services.worker.metrics import QueueDepthCollector


def test_queue_depth_collector_reports_visible_and_in_flight_messages_of_queue_and_dlq(
    stack, names, provisioned
):
    collector = QueueDepthCollector(stack.settings(WorkerSettings, **names))
    sqs = aws.client(stack.settings(WorkerSettings, **names), "sqs")
    for _ in range(3):
        sqs.send_message(QueueUrl=provisioned["queue_url"], MessageBody="x")
    sqs.send_message(QueueUrl=provisioned["dlq_url"], MessageBody="y")
    sqs.receive_message(QueueUrl=provisioned["queue_url"], MaxNumberOfMessages=1)

    [family] = collector.collect()
    samples = {(s.labels["queue"], s.labels["state"]): s.value for s in family.samples}
    assert samples == {
        ("events", "visible"): 2,
        ("events", "in_flight"): 1,
        ("dlq", "visible"): 1,
        ("dlq", "in_flight"): 0,
    }
