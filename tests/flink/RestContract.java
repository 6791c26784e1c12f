import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.List;
import java.util.Map;

import org.apache.flink.runtime.rest.messages.ErrorResponseBody;
import org.apache.flink.runtime.rest.messages.MessageHeaders;
import org.apache.flink.runtime.rest.util.RestMapperUtils;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JavaType;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.JsonNode;
import org.apache.flink.shaded.jackson2.com.fasterxml.jackson.databind.ObjectMapper;

/**
 * Checks Eddy's REST answers against Flink's own REST message classes, the definitions Flink's
 * REST API reference and OpenAPI document are generated from.
 *
 * <p>For each endpoint: the answer must have the status Flink's headers declare, must parse into
 * the response class with the mapper Flink's REST client uses, and, serialized back by Flink,
 * every field Flink would send must be in Eddy's answer with the same JSON type. Error answers
 * must parse as Flink's {@code ErrorResponseBody}.
 *
 * <p>Usage: {@code java RestContract http://host:port} against a cluster running a checkpointed
 * streaming job. Prints one line per endpoint; exits 1 if any fails.
 */
public class RestContract {
    private static final ObjectMapper MAPPER = RestMapperUtils.getFlexibleObjectMapper();
    private static final HttpClient HTTP = HttpClient.newHttpClient();
    private static String base;
    private static int failures = 0;

    public static void main(String[] args) throws Exception {
        base = args[0];
        JsonNode jobs = get("/jobs/overview").get("jobs");
        String job = null;
        for (JsonNode j : jobs) {
            if ("RUNNING".equals(j.get("state").asText())) {
                job = j.get("jid").asText();
            }
        }
        if (job == null) {
            throw new IllegalStateException("no running job at " + base);
        }
        JsonNode details = get("/jobs/" + job);
        String vertex = details.get("vertices").get(0).get("id").asText();
        JsonNode checkpoints = get("/jobs/" + job + "/checkpoints");
        String checkpoint = checkpoints.get("latest").get("completed").get("id").asText();
        String tm = get("/taskmanagers").get("taskmanagers").get(0).get("id").asText();

        String m = "org.apache.flink.runtime.rest.messages.";
        String[][] endpoints = {
            {m + "DashboardConfigurationHeaders", ""},
            {m + "ClusterOverviewHeaders", ""},
            {m + "ClusterConfigurationInfoHeaders", ""},
            {m + "JobManagerEnvironmentHeaders", ""},
            {m + "cluster.JobManagerLogListHeaders", ""},
            {m + "job.metrics.JobManagerMetricsHeaders", ""},
            {m + "job.metrics.JobManagerMetricsHeaders", "?get=Status.JVM.Memory.Heap.Used"},
            {m + "JobsOverviewHeaders", ""},
            {m + "JobIdsWithStatusesOverviewHeaders", ""},
            {m + "job.JobDetailsHeaders", ""},
            {m + "job.JobStatusInfoHeaders", ""},
            {m + "JobPlanHeaders", ""},
            {m + "JobConfigHeaders", ""},
            {m + "JobExceptionsHeaders", "?maxExceptions=10"},
            {m + "JobAccumulatorsHeaders", ""},
            {m + "job.JobManagerJobConfigurationHeaders", ""},
            {m + "job.JobManagerJobEnvironmentHeaders", ""},
            {m + "JobManagerLogUrlHeaders", ""},
            {m + "job.JobResourceRequirementsHeaders", ""},
            {m + "checkpoints.CheckpointingStatisticsHeaders", ""},
            {m + "checkpoints.CheckpointConfigHeaders", ""},
            {m + "checkpoints.CheckpointStatisticDetailsHeaders", ""},
            {m + "checkpoints.TaskCheckpointStatisticsHeaders", ""},
            {m + "JobVertexDetailsHeaders", ""},
            {m + "JobVertexBackPressureHeaders", ""},
            {m + "JobVertexAccumulatorsHeaders", ""},
            {m + "SubtasksAllAccumulatorsHeaders", ""},
            {m + "SubtasksTimesHeaders", ""},
            {m + "JobVertexTaskManagersHeaders", ""},
            {m + "job.metrics.JobVertexWatermarksHeaders", ""},
            {m + "job.metrics.JobVertexMetricsHeaders", ""},
            {m + "job.metrics.JobVertexMetricsHeaders", "?get=0.numRecordsIn"},
            {m + "job.metrics.AggregatedSubtaskMetricsHeaders", ""},
            {
                m + "job.metrics.AggregatedSubtaskMetricsHeaders",
                "?get=numRecordsIn,busyTimeMsPerSecond&agg=min,max,avg,sum,skew"
            },
            {m + "job.metrics.SubtaskMetricsHeaders", "?get=numRecordsIn"},
            {m + "job.SubtaskCurrentAttemptDetailsHeaders", ""},
            {m + "taskmanager.TaskManagersHeaders", ""},
            {m + "taskmanager.TaskManagerDetailsHeaders", ""},
            {m + "taskmanager.TaskManagerLogsHeaders", ""},
            {m + "job.metrics.TaskManagerMetricsHeaders", ""},
            {m + "job.metrics.TaskManagerMetricsHeaders", "?get=Status.JVM.Memory.Heap.Used"},
            {m + "TaskManagerLogUrlHeaders", ""},
        };
        for (String[] e : endpoints) {
            MessageHeaders<?, ?, ?> headers = instance(e[0]);
            String path =
                    headers.getTargetRestEndpointURL()
                            .replace(":jobid", job)
                            .replace(":vertexid", vertex)
                            .replace(":checkpointid", checkpoint)
                            .replace(":taskmanagerid", tm)
                            .replace(":subtaskindex", "0");
            check(headers, "/v1" + path + e[1]);
        }
        checkError("/v1/jobs/00000000000000000000000000000000", 404);
        checkError("/v1/jobs/" + job + "/vertices/nope", 404);
        checkError("/v1/jobs/" + job + "/checkpoints/details/999999", 404);
        if (failures > 0) {
            System.out.println(failures + " endpoint(s) differ from Flink's REST API");
            System.exit(1);
        }
        System.out.println("every endpoint matches Flink's REST API");
    }

    private static MessageHeaders<?, ?, ?> instance(String name) throws Exception {
        Class<?> c = Class.forName(name);
        try {
            Method get = c.getMethod("getInstance");
            return (MessageHeaders<?, ?, ?>) get.invoke(null);
        } catch (NoSuchMethodException e) {
            Field f = c.getField("INSTANCE");
            return (MessageHeaders<?, ?, ?>) f.get(null);
        }
    }

    private static HttpResponse<String> fetch(String path) throws Exception {
        HttpRequest r = HttpRequest.newBuilder(URI.create(base + path)).GET().build();
        return HTTP.send(r, HttpResponse.BodyHandlers.ofString());
    }

    private static JsonNode get(String path) throws Exception {
        HttpResponse<String> r = fetch(path);
        if (r.statusCode() != 200) {
            throw new IllegalStateException(path + ": " + r.statusCode() + " " + r.body());
        }
        return MAPPER.readTree(r.body());
    }

    private static void check(MessageHeaders<?, ?, ?> headers, String path) {
        String name = headers.getClass().getSimpleName();
        try {
            HttpResponse<String> r = fetch(path);
            int want = headers.getResponseStatusCode().code();
            if (r.statusCode() != want) {
                fail(name, path, "status " + r.statusCode() + ", Flink answers " + want + ": " + r.body());
                return;
            }
            JavaType type = responseType(headers);
            Object parsed = MAPPER.readValue(r.body(), type);
            JsonNode flink = MAPPER.valueToTree(parsed);
            JsonNode eddy = MAPPER.readTree(r.body());
            List<String> diffs = new ArrayList<>();
            compare("$", flink, eddy, diffs);
            if (!diffs.isEmpty()) {
                fail(name, path, String.join("; ", diffs));
                return;
            }
            System.out.println("ok   " + name + " GET " + path);
        } catch (Exception ex) {
            fail(name, path, ex.toString());
        }
    }

    private static JavaType responseType(MessageHeaders<?, ?, ?> headers) {
        Collection<Class<?>> params = headers.getResponseTypeParameters();
        if (params.isEmpty()) {
            return MAPPER.constructType(headers.getResponseClass());
        }
        return MAPPER.getTypeFactory()
                .constructParametricType(headers.getResponseClass(), params.toArray(new Class<?>[0]));
    }

    /** Every field of Flink's serialization must be in Eddy's answer, with the same JSON type. */
    private static void compare(String at, JsonNode flink, JsonNode eddy, List<String> diffs) {
        if (eddy == null || eddy.isMissingNode()) {
            diffs.add(at + " missing");
            return;
        }
        if (flink.isNull() || flink.isPojo()) {
            // Null: Flink would omit or accept it; a POJO: raw JSON Flink passes through.
            return;
        }
        if (flink.getNodeType() != eddy.getNodeType()) {
            diffs.add(at + " is " + eddy.getNodeType() + ", Flink sends " + flink.getNodeType());
            return;
        }
        if (flink.isObject()) {
            Iterator<Map.Entry<String, JsonNode>> fields = flink.fields();
            while (fields.hasNext()) {
                Map.Entry<String, JsonNode> f = fields.next();
                compare(at + "." + f.getKey(), f.getValue(), eddy.get(f.getKey()), diffs);
            }
        } else if (flink.isArray()) {
            for (int i = 0; i < flink.size(); i++) {
                compare(at + "[" + i + "]", flink.get(i), eddy.get(i), diffs);
            }
        }
    }

    private static void checkError(String path, int status) {
        try {
            HttpResponse<String> r = fetch(path);
            ErrorResponseBody body = MAPPER.readValue(r.body(), ErrorResponseBody.class);
            if (r.statusCode() != status || body.errors == null || body.errors.isEmpty()) {
                fail("ErrorResponseBody", path, "status " + r.statusCode() + ": " + r.body());
                return;
            }
            System.out.println("ok   ErrorResponseBody GET " + path + " " + status);
        } catch (Exception ex) {
            fail("ErrorResponseBody", path, ex.toString());
        }
    }

    private static void fail(String name, String path, String why) {
        failures++;
        System.out.println("FAIL " + name + " GET " + path + ": " + why);
    }
}
