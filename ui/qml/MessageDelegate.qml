// One message: a day separator when a new day starts, then the bubble. Others' messages sit
// on the left with picture and name (first of a run), your own on the right in yellow; the
// time and the number of members who have not read it yet sit beside the bubble.
import QtQuick 2.15
import QtQuick.Controls 2.15
import "."

Item {
    id: root
    required property int seq
    required property string userId
    required property string senderName
    required property string avatarSource
    required property bool isOwn
    required property string chatType
    required property string text
    required property string imageSource
    required property int imageWidth
    required property int imageHeight
    required property string emoticonSource
    required property string timeText
    required property string dayText
    required property bool showDay
    required property bool showSender
    required property bool showTime
    required property int unreadCount

    signal imageClicked(string source)

    // The same outer margin on both sides: others' pictures start `margin` from the left edge,
    // and the tip of your bubble's tail ends `margin` from the right edge (the bubbles of a run
    // line up `tailRoom` further in). Nothing gets wider than the view minus these margins.
    readonly property int margin: 14
    readonly property int tailRoom: 6
    readonly property int metaGap: 5
    readonly property int avatarRoom: isOwn ? 0 : Theme.avatar + 8
    // Room for the content (bubble, picture or emoticon) beside the time and unread counter.
    readonly property real maxContent: Math.max(48, Math.min(
        (width - 2 * margin - avatarRoom) * 0.72,
        width - 2 * margin - avatarRoom - tailRoom - meta.width - metaGap))
    readonly property real shownImageWidth: Math.min(imageWidth > 0 ? imageWidth : 200, 260, maxContent)
    readonly property real shownImageHeight: imageWidth > 0 ? Math.min(shownImageWidth * imageHeight / imageWidth, 360) : 150
    readonly property real emoticonSize: Math.min(96, maxContent)

    implicitHeight: column.implicitHeight + (showSender || showDay ? 8 : 3)

    Column {
        id: column
        y: root.showSender || root.showDay ? 6 : 1
        width: parent.width
        spacing: 6

        Item {   // the day separator
            visible: root.showDay
            width: parent.width
            height: visible ? 40 : 0
            Rectangle {
                anchors.centerIn: parent
                width: dayLabel.implicitWidth + 28
                height: 24
                radius: 12
                color: "#33000000"
                Text {
                    id: dayLabel
                    anchors.centerIn: parent
                    text: "🗓 " + root.dayText
                    color: "white"
                    font.pixelSize: 12
                }
            }
        }

        Item {
            width: parent.width
            height: Math.max(body.height + (nameLabel.visible ? nameLabel.height + 4 : 0),
                             avatar.visible ? avatar.height : 0)

            Avatar {
                id: avatar
                visible: !root.isOwn && root.showSender
                x: root.margin
                size: Theme.avatar
                source: root.avatarSource
                label: root.senderName
            }
            Text {
                id: nameLabel
                visible: !root.isOwn && root.showSender
                x: root.margin + root.avatarRoom
                width: Math.min(implicitWidth, root.width - x - root.margin)
                elide: Text.ElideRight
                text: root.senderName
                color: "#4A5A6A"
                font.pixelSize: 12
            }
            Item {
                id: body
                y: nameLabel.visible ? nameLabel.height + 4 : 0
                x: root.isOwn ? root.width - root.margin - root.tailRoom - width : root.margin + root.avatarRoom
                width: content.width + (meta.width > 0 ? root.metaGap + meta.width : 0)
                height: Math.max(content.height, meta.height)

                // Unread counter above the time, beside the bottom of the content: left of your
                // own bubbles and right of others', both lined up on the side facing the bubble.
                Column {
                    id: meta
                    x: root.isOwn ? 0 : content.width + root.metaGap
                    anchors.bottom: parent.bottom
                    anchors.bottomMargin: 1
                    spacing: 0
                    Text {
                        objectName: "unreadCounter"
                        anchors.right: root.isOwn ? parent.right : undefined
                        visible: root.unreadCount > 0
                        text: root.unreadCount
                        color: Theme.counter
                        font.pixelSize: 11
                        font.bold: true
                    }
                    Text {
                        objectName: "messageTime"
                        anchors.right: root.isOwn ? parent.right : undefined
                        visible: root.showTime
                        text: root.timeText
                        color: "#556677"
                        font.pixelSize: 10
                    }
                }
                Item {
                    id: content
                    objectName: "messageContent"
                    x: root.isOwn ? parent.width - width : 0
                    width: root.chatType === "image" ? root.shownImageWidth
                         : emoticon.visible ? root.emoticonSize : bubble.width
                    height: root.chatType === "image" ? root.shownImageHeight
                          : emoticon.visible ? root.emoticonSize : bubble.height

                    Rectangle {   // text bubble (also unknown types and emoticons we lack)
                        id: bubble
                        visible: root.chatType !== "image" && !emoticon.visible
                        color: root.isOwn ? Theme.ownBubble : Theme.otherBubble
                        radius: 10
                        // As wide as the longest (wrapped) line: a wrapping Text's implicitWidth
                        // is wrong for text with line breaks, its contentWidth is not.
                        width: Math.ceil(message.contentWidth) + 24
                        height: message.height + 18
                        Rectangle {   // the tail on the first bubble of a run
                            visible: root.showSender
                            width: 10; height: 10; rotation: 45
                            color: parent.color
                            x: root.isOwn ? parent.width - 6 : -4
                            y: 8
                            z: -1
                        }
                        Text {
                            id: message
                            x: 12; y: 9
                            width: Math.min(implicitWidth, root.maxContent - 24)
                            text: root.chatType === "emoticon" ? ":" + root.text + ":" : root.text
                            textFormat: Text.PlainText
                            wrapMode: Text.Wrap
                            color: Theme.ink
                            font.pixelSize: Theme.fontNormal
                            lineHeight: 1.15
                        }
                    }
                    Image {
                        id: emoticon
                        visible: root.chatType === "emoticon" && root.emoticonSource.length > 0
                        anchors.fill: parent
                        source: visible ? root.emoticonSource : ""
                        sourceSize.width: 220
                        asynchronous: true
                        fillMode: Image.PreserveAspectFit
                    }
                    Rectangle {   // picture, click to enlarge
                        visible: root.chatType === "image"
                        anchors.fill: parent
                        radius: 10
                        color: "#DDE6EE"
                        border.color: "#22000000"
                        clip: true
                        Image {
                            anchors.fill: parent
                            source: parent.visible ? root.imageSource : ""
                            sourceSize.width: root.shownImageWidth * 2
                            asynchronous: true
                            fillMode: Image.PreserveAspectCrop
                        }
                        MouseArea {
                            anchors.fill: parent
                            cursorShape: Qt.PointingHandCursor
                            onClicked: root.imageClicked(root.imageSource)
                        }
                    }
                }
            }
        }
    }
}
